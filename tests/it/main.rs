//! Integration tests: the `unroot` binary against real images, the real `distribution`
//! registry, skopeo and umoci as independent readers.

mod analyze;
mod emit;
mod errors;
mod faults;
mod golden;
mod hostimage;
mod learn;
mod learned_recipes;
mod platforms;
mod recipes;
mod registry;
mod runtime;
mod selfimage;
mod serve;
mod services;
mod session;
mod signals;
mod support;
mod tokens;
mod trace;
mod transports;

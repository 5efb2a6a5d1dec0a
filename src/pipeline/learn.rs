//! `Session::learn`: run the original and see what it needs, convert, prove by running the
//! result, and write down what was learned as a recipe.
//!
//! Round 0 runs the original image as `docker run` would (its `User`, root for most;
//! Docker's capabilities, a writable root filesystem), in a user namespace, its own
//! network namespace, with a memory and a process limit, traced (see
//! [`crate::runtime::trace`]). What it did becomes changes ([`crate::plan::learn`]), and
//! the changes a recipe. Each later round converts the image with that recipe into the
//! work directory and runs the result as `verify` does (its user, and an arbitrary UID in
//! group 0; a read-only root with exactly the contract's mounts), traced too: each refusal
//! is a fact for the next round. Learning stops when the result serves, when a round
//! learns nothing new, when the service needs a capability no unprivileged container has,
//! or at the round or time limit.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::Error;
use crate::model::ImageLocation;
use crate::plan::learn::{Knowledge, Run as LearnRun};
use crate::recipe::Recipe;
use crate::runtime;

use super::verify::{launch, RunAs};
use super::{ConvertOutcome, ConvertRequest, ImageRequest, Session, Verification, VerifyOptions};
use super::{VerifyRequest, ID_MAP};

/// How many rounds of proving learning takes at most, by default.
pub const ROUNDS: usize = 4;

/// How long learning may take, by default.
pub const TIME_LIMIT: Duration = Duration::from_secs(600);

/// What to learn from and how.
#[derive(Clone, Debug)]
pub struct LearnRequest {
    /// The conversion to learn for: its image (one platform: `--platform`, else this
    /// machine's) and the options that shape the converted image; its destination is not
    /// written.
    pub conversion: ConvertRequest,
    /// How.
    pub options: LearnOptions,
}

/// How to learn.
#[derive(Clone, Debug)]
pub struct LearnOptions {
    /// How each run goes (the runtime, the timeout, how long it is watched, a probe).
    pub run: VerifyOptions,
    /// The most rounds of proving.
    pub rounds: usize,
    /// The most time learning may take (a round under way is finished).
    pub time_limit: Duration,
}

impl LearnOptions {
    /// The defaults, with `run` for each run.
    pub fn new(run: VerifyOptions) -> LearnOptions {
        LearnOptions {
            run,
            rounds: ROUNDS,
            time_limit: TIME_LIMIT,
        }
    }
}

/// One round.
#[derive(Clone, Debug, Serialize)]
pub struct Round {
    /// Its number (0: the original).
    pub round: usize,
    /// What ran.
    pub ran: String,
    /// Each run's verdict (for proving rounds).
    pub runs: Vec<String>,
    /// How many changes it learned.
    pub learned: usize,
    /// How long it took.
    pub seconds: f64,
}

/// Why learning stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stop {
    /// The converted image served, as its user and as an arbitrary UID.
    Serves,
    /// A round learned nothing new.
    NothingNew,
    /// The service needs a capability no unprivileged container has.
    Capability,
    /// The round limit.
    Rounds,
    /// The time limit.
    Time,
}

impl Stop {
    /// A sentence for reports.
    pub fn describe(self) -> &'static str {
        match self {
            Stop::Serves => "the converted image serves",
            Stop::NothingNew => "a round learned nothing new",
            Stop::Capability => "the service needs a capability that no unprivileged container has",
            Stop::Rounds => "the round limit was reached",
            Stop::Time => "the time limit was reached",
        }
    }
}

/// What learning found.
#[derive(Clone, Debug, Serialize)]
pub struct Learning {
    /// The image, as given.
    pub location: String,
    /// Its manifest's digest.
    pub digest: String,
    /// Each round.
    pub rounds: Vec<Round>,
    /// The changes and the problems, with their evidence.
    pub knowledge: Knowledge,
    /// The learned recipe's name.
    pub recipe_name: String,
    /// The learned recipe (TOML).
    pub recipe: String,
    /// The last run of the converted image, when one ran.
    pub verification: Option<Verification>,
    /// Whether the converted image served: every change is then proven.
    pub proven: bool,
    /// Why it stopped.
    pub stopped: Stop,
    /// How long it took.
    pub seconds: f64,
    /// The manifest digest of the last image run (a conversion with the recipe gives it).
    #[serde(skip)]
    pub tried: Option<crate::model::Digest>,
    /// Every run's trace, with the run's name (`round 1, the converted image as ...`).
    #[serde(skip)]
    pub traces: Vec<(String, crate::model::trace::Trace)>,
}

impl Session {
    /// Learns what the image needs (see the module documentation).
    pub fn learn(&self, request: &LearnRequest) -> Result<Learning, Error> {
        let result = self.learn_image(request);
        self.settle(result)
    }

    fn learn_image(&self, request: &LearnRequest) -> Result<Learning, Error> {
        can_trace(&request.options.run.runtime)?;
        let started = Instant::now();
        let source = &request.conversion.image;
        let mut target = self.target(source)?;
        let location = source.source.to_string();
        let digest = target.analysis.digest.to_string();
        let mut knowledge = Knowledge::default();
        let mut rounds = Vec::new();
        let mut traces = Vec::new();

        // Round 0: the original, as `docker run` runs it.
        let (program, recipe_name) = {
            let bundle = self.unpack(&mut target)?;
            let launch = launch(&target, &bundle)?;
            let root = launch.user.is_some_and(|(u, _)| u == 0);
            let ran = if root {
                "the original as root, as `docker run` runs it".to_string()
            } else {
                "the original as its user, as `docker run` runs it".to_string()
            };
            let way = RunAs {
                as_: ran.clone(),
                ids: launch.user,
                profile: runtime::Profile::Docker,
                trace: true,
            };
            let (_, observed) = self.run_as(
                &bundle,
                &launch,
                &[],
                &way,
                0,
                &request.options.run,
                target.image.config.user(),
            )?;
            let trace = observed.trace.unwrap_or_default();
            let label = "round 0, the original as root".to_string();
            let learned = knowledge.observe(
                &LearnRun {
                    trace: &trace,
                    view: &bundle.view,
                    read: &|p| bundle.read(p),
                    as_root: root,
                    label: label.clone(),
                    runtime_uid: Some(target.analysis.plan.identity.uid),
                },
                0,
            );
            rounds.push(Round {
                round: 0,
                ran,
                runs: Vec::new(),
                learned,
                seconds: started.elapsed().as_secs_f64(),
            });
            let named = service_program(&trace, &launch.args);
            traces.push((label, trace));
            named
        };

        let mut verification = None;
        let mut tried = None;
        let mut stopped = Stop::Rounds;
        let mut recipe = String::new();
        for round in 1..=request.options.rounds {
            if knowledge.needs_capability() {
                stopped = Stop::Capability;
                break;
            }
            if started.elapsed() >= request.options.time_limit {
                stopped = Stop::Time;
                break;
            }
            let round_started = Instant::now();
            recipe = draft(&knowledge, &recipe_name, &program, &location, &digest);
            let trial_scratch = self.scratch()?;
            let trial = ImageLocation::OciLayout {
                dir: trial_scratch.path().join("trial"),
                tag: Some(format!("round-{round}")),
            };
            let image = with_recipe(source, &recipe, &recipe_name)?;
            let convert = ConvertRequest {
                image: image.clone(),
                destination: trial.clone(),
                dry_run: false,
                verify: None,
                learn: None,
                explicit_destination: false,
                ..request.conversion.clone()
            };
            match self.convert_all(&convert)? {
                ConvertOutcome::Image(c) => tried = Some(c.manifest.digest.clone()),
                ConvertOutcome::AlreadyConverted { .. } => {
                    return Err(Error::Unsupported {
                        location,
                        reason: "it was converted by unroot already: learn from the original"
                            .into(),
                    })
                }
                ConvertOutcome::Index(_) => {}
            }
            let mut run_options = request.options.run.clone();
            run_options.trace = true;
            run_options.arbitrary_uid = true;
            let uid = target.analysis.plan.identity.uid;
            let mut learned = 0;
            knowledge.begin_round();
            let checked = self.verify_image(
                &VerifyRequest {
                    image: ImageRequest {
                        source: trial.clone(),
                        ..image
                    },
                    options: run_options,
                },
                &mut |run, observed, bundle| {
                    let Some(trace) = &observed.trace else {
                        return;
                    };
                    let who = if run.as_ == "arbitrary uid" {
                        "an arbitrary uid in group 0".to_string()
                    } else {
                        format!("its user {}:{}", run.uid, run.gid)
                    };
                    let label = format!("round {round}, the converted image as {who}");
                    learned += knowledge.observe(
                        &LearnRun {
                            trace,
                            view: &bundle.view,
                            read: &|p| bundle.read(p),
                            as_root: false,
                            label: label.clone(),
                            runtime_uid: Some(uid),
                        },
                        round,
                    );
                    traces.push((label, trace.clone()));
                },
            )?;
            rounds.push(Round {
                round,
                ran: "the converted image, as its user and as an arbitrary uid in group 0".into(),
                runs: checked.summary(),
                learned,
                seconds: round_started.elapsed().as_secs_f64(),
            });
            if learned == 0 {
                // Nothing a call showed: what the program said is all there is to go on.
                for run in checked.runs.iter().filter(|r| !r.passed) {
                    let last = run
                        .log
                        .iter()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .map_or("nothing".to_string(), |l| format!("`{}`", l.trim()));
                    knowledge.add_problem(
                        format!(
                            "as the {} {}:{} {}; the last it said: {last}",
                            run.as_,
                            run.uid,
                            run.gid,
                            run.reasons.join("; ")
                        ),
                        vec![format!(
                            "round {round}: no refused call explains it (see the run's output)"
                        )],
                    );
                }
            }
            let passed = checked.passed;
            verification = Some(checked);
            if passed {
                stopped = Stop::Serves;
                break;
            }
            if learned == 0 {
                stopped = Stop::NothingNew;
                break;
            }
        }
        if recipe.is_empty() {
            recipe = draft(&knowledge, &recipe_name, &program, &location, &digest);
        }
        Ok(Learning {
            location,
            digest,
            rounds,
            knowledge,
            recipe_name,
            recipe,
            proven: stopped == Stop::Serves,
            verification,
            stopped,
            seconds: started.elapsed().as_secs_f64(),
            tried,
            traces,
        })
    }
}

/// The request with the learned recipe added (as `--recipe FILE` adds one).
pub(super) fn with_recipe(
    image: &ImageRequest,
    recipe: &str,
    name: &str,
) -> Result<ImageRequest, Error> {
    let mut image = image.clone();
    let learned = Recipe::parse(recipe, &format!("{name}.toml"))?;
    image.recipes.forced.retain(|r| r.name != learned.name);
    image.recipes.candidates.retain(|r| r.name != learned.name);
    image.recipes.forced.push(learned);
    Ok(image)
}

/// The recipe text of what is known.
fn draft(k: &Knowledge, name: &str, program: &str, location: &str, digest: &str) -> String {
    let header = vec![
        format!("Learned by `unroot learn` from {location}"),
        format!("({digest}):"),
        "what the service did when it ran as root, and what it was refused when the".into(),
        "converted image ran as its user. Each entry says what showed it. Review it".into(),
        "before committing it; `unroot convert --recipe FILE` applies it with no".into(),
        "tracing.".into(),
    ];
    let base = program.rsplit('/').next().unwrap_or(program);
    k.draft(
        name,
        &format!("{base}, as learned by running it"),
        program,
        header,
    )
    .render()
}

/// The service's program (the first one that bound a port, else the last one executed
/// by the first process) and the learned recipe's name (`learned-nsd`).
fn service_program(trace: &crate::model::trace::Trace, args: &[String]) -> (String, String) {
    use crate::model::trace::Call;
    let binder = trace
        .events
        .iter()
        .find(|e| matches!(e.call, Call::Bind { .. }))
        .map(|e| e.pid);
    let exec_of = |pid: u32| {
        trace.events.iter().rev().find_map(|e| match &e.call {
            Call::Exec { path, .. } if e.pid == pid && e.result.is_ok() => Some(path.clone()),
            _ => None,
        })
    };
    let program = binder
        .and_then(exec_of)
        .or_else(|| trace.processes.keys().next().and_then(|p| exec_of(*p)))
        .or_else(|| args.first().cloned())
        .unwrap_or_else(|| "/".into());
    let base = program.rsplit('/').next().unwrap_or(&program);
    let clean: String = base
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let clean = clean.trim_matches('-');
    let name = if clean.is_empty() {
        "learned".to_string()
    } else {
        format!("learned-{clean}")
    };
    (program, name)
}

/// Learning runs the image under a tracer in a user namespace: root on the host and an
/// OCI runtime on PATH.
fn can_trace(runtime: &str) -> Result<(), Error> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(Error::CannotRun {
            reason: format!(
                "learning runs the image under a tracer in a user namespace (host uids {} and up), which needs root on this machine: run it as root",
                ID_MAP.base
            ),
        });
    }
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(runtime).is_file()))
        || (runtime.contains('/') && std::path::Path::new(runtime).is_file());
    if !found {
        return Err(crate::runtime::RuntimeError::Missing(runtime.to_string()).into());
    }
    Ok(())
}

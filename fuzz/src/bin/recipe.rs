//! Recipe files as users write them.
use unroot::recipe::Recipe;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        if let Ok(text) = std::str::from_utf8(data) {
            let _ = Recipe::parse(text, "fuzz.toml");
        }
    });
}

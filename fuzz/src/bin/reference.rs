//! Image references, locations and platforms as users type them.
use unroot::model::{ImageLocation, ImageRef, Platform};

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        if let Ok(r) = ImageRef::parse(text) {
            // What parses prints back and parses again to the same reference.
            let again = ImageRef::parse(&r.to_string()).expect("a printed reference parses");
            assert_eq!(again, r, "{text:?}");
        }
        let _ = ImageLocation::parse(text);
        let _ = Platform::parse(text);
    });
}

//! Durations on the command line: bare seconds (`90`) or numbers with units, as humans
//! and the registry's own config spell them (`90s`, `5m`, `1h`, `1h30m`, `500ms`, `2d`).

use std::time::Duration;

/// What a duration may be, for error messages.
const SPELLING: &str =
    "a duration is seconds (`90`) or numbers with units: `90s`, `5m`, `1h`, `1h30m`, `500ms`, `2d`";

/// Parses a duration; zero is allowed (`0`, `0s`: off, where a flag says so).
pub fn any(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(SPELLING.to_string());
    }
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let unit_len = rest[digits..]
            .bytes()
            .take_while(u8::is_ascii_alphabetic)
            .count();
        let (number, unit) = (&rest[..digits], &rest[digits..digits + unit_len]);
        let number: u64 = number
            .parse()
            .map_err(|_| format!("`{text}`: {SPELLING}"))?;
        let part = match unit {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number.saturating_mul(60)),
            "h" => Duration::from_secs(number.saturating_mul(3600)),
            "d" => Duration::from_secs(number.saturating_mul(86_400)),
            _ => return Err(format!("`{text}`: {SPELLING}")),
        };
        total = total.saturating_add(part);
        rest = &rest[digits + unit_len..];
    }
    Ok(total)
}

/// Parses a duration that must be more than zero.
pub fn positive(text: &str) -> Result<Duration, String> {
    let d = any(text)?;
    if d.is_zero() {
        return Err(format!("`{text}`: must be more than zero"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_units_parse() {
        for (text, secs, millis) in [
            ("90", 90, 0),
            ("90s", 90, 0),
            ("5m", 300, 0),
            ("1h", 3600, 0),
            ("1h30m", 5400, 0),
            ("2d", 172_800, 0),
            ("500ms", 0, 500),
            ("1m30s", 90, 0),
            ("0", 0, 0),
        ] {
            assert_eq!(
                any(text),
                Ok(Duration::from_secs(secs) + Duration::from_millis(millis)),
                "{text}"
            );
        }
    }

    #[test]
    fn anything_else_says_how_to_spell_it() {
        for text in ["", "5x", "m", "1.5s", "-3", "5 m", "s5"] {
            let err = any(text).unwrap_err();
            assert!(err.contains("`90s`, `5m`"), "{text}: {err}");
        }
        assert_eq!(positive("0s").unwrap_err(), "`0s`: must be more than zero");
        assert_eq!(positive("5s"), Ok(Duration::from_secs(5)));
    }
}

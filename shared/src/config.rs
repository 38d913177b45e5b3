//! Parsing helpers for settings that both services read.

use std::time::Duration;

/// Parses durations such as `15m`, `900s`, `14d`; zero is refused.
pub fn duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("must be longer than zero".to_owned());
    }
    Ok(d)
}

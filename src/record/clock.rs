//! Wall-clock time stamps for recording lines: RFC 3339 with
//! microseconds, UTC (`2026-11-23T19:32:38.581218Z`), written for every
//! event, so the text up to the second is reused while the second lasts.

use chrono::{DateTime, SecondsFormat, Utc};

/// RFC 3339 with microseconds, UTC.
pub(super) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// [`rfc3339`] for times that mostly fall in the same second as the one
/// before: the text up to the second is kept, only the microseconds are
/// written anew.
#[derive(Debug, Default)]
pub(super) struct Clock {
    /// The second the prefix is for, and the prefix (`…T19:32:38`).
    second: Option<(i64, String)>,
}

impl Clock {
    pub(super) fn text(&mut self, t: DateTime<Utc>) -> String {
        let (second, micros) = (t.timestamp(), t.timestamp_subsec_micros());
        let prefix = match &self.second {
            Some((s, prefix)) if *s == second && micros < 1_000_000 => prefix,
            _ => {
                let full = rfc3339(t);
                let Some(dot) = full.find('.').filter(|_| micros < 1_000_000) else {
                    return full;
                };
                self.second = Some((second, full[..dot].to_owned()));
                return full;
            }
        };
        let mut text = String::with_capacity(prefix.len() + 8);
        text.push_str(prefix);
        text.push('.');
        let mut digits = [b'0'; 6];
        let mut n = micros;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (n % 10) as u8;
            n /= 10;
        }
        text.extend(digits.iter().map(|&d| char::from(d)));
        text.push('Z');
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_writes_what_chrono_writes() {
        let mut clock = Clock::default();
        let start = DateTime::parse_from_rfc3339("2026-12-31T23:59:58.999990Z")
            .unwrap()
            .with_timezone(&Utc);
        // Across second, minute, hour, day and year boundaries, in steps
        // that land on 0 and 999 999 microseconds.
        for step in 0..3_000_000i64 / 7 {
            let t = start + chrono::TimeDelta::microseconds(step * 7);
            assert_eq!(clock.text(t), rfc3339(t), "{step}");
        }
        // Going back in time is fine too.
        let t = start - chrono::TimeDelta::days(400);
        assert_eq!(clock.text(t), rfc3339(t));
        assert_eq!(clock.text(start), rfc3339(start));
    }
}

//! The bad fields of one request, collected before answering so a caller can fix them all at
//! once.

use crate::error::{Error, FieldViolation, Result};

/// Most field violations reported for one request: enough to fix a request, small enough that
/// the details stay far below the 16 KiB metadata limit of gRPC clients.
const MAX_VIOLATIONS: usize = 10;

/// Longest description of one violation.
const MAX_DESCRIPTION: usize = 300;

/// Collects the bad fields of a request before answering: the first [`MAX_VIOLATIONS`], and
/// how many more there were.
#[derive(Debug, Default)]
pub(crate) struct Violations {
    reported: Vec<FieldViolation>,
    more: usize,
}

impl Violations {
    /// Records a bad field.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        if self.reported.len() >= MAX_VIOLATIONS {
            self.more += 1;
            return;
        }
        let mut description: String = description.into();
        if description.len() > MAX_DESCRIPTION {
            let cut = (0..=MAX_DESCRIPTION)
                .rev()
                .find(|&i| description.is_char_boundary(i))
                .unwrap_or(0);
            description.truncate(cut);
            description.push('…');
        }
        self.reported.push(FieldViolation {
            field: field.into(),
            description,
        });
    }

    /// Records the error of a check, if any.
    pub fn check(&mut self, field: impl Into<String>, result: Result<(), String>) {
        if let Err(description) = result {
            self.add(field, description);
        }
    }

    /// Parses `text` with `parse`, recording the error as a violation of `field`.
    pub fn parse<T>(
        &mut self,
        field: &str,
        text: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        parse(text).map_err(|e| self.add(field, e)).ok()
    }

    /// Like [`finish`](Self::finish), for a value that exists only if its parses succeeded
    /// (a failed parse is always a violation, so `None` is never returned as success).
    pub fn finish_parsed<T>(self, value: Option<T>) -> Result<T> {
        self.finish(value)?
            .ok_or_else(|| Error::internal("a failed parse left no violation"))
    }

    /// `Ok(value)` if nothing was wrong, else every violation.
    pub fn finish<T>(mut self, value: T) -> Result<T> {
        if self.reported.is_empty() {
            return Ok(value);
        }
        if self.more > 0 {
            self.reported.push(FieldViolation {
                field: "request".into(),
                description: format!("{} more problems not listed", self.more),
            });
        }
        Err(Error::InvalidArgument(self.reported))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_are_capped() {
        let mut v = Violations::default();
        for i in 0..40 {
            v.add(format!("scopes[{i}]"), "x".repeat(10_000));
        }
        let Err(Error::InvalidArgument(violations)) = v.finish(()) else {
            panic!()
        };
        assert_eq!(violations.len(), MAX_VIOLATIONS + 1);
        assert!(
            violations
                .iter()
                .all(|v| v.description.len() <= MAX_DESCRIPTION + 3)
        );
        assert!(violations.last().unwrap().description.contains("30 more"));
    }
}

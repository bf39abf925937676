//! What one attack measured and whether the server held.

use std::time::Duration;

#[derive(Default)]
pub struct Outcome {
    figures: Vec<(String, String)>,
    failures: Vec<String>,
}

impl Outcome {
    /// An attack that could not run to the end: the reason is its failure.
    pub fn broken(why: String) -> Outcome {
        let mut o = Outcome::default();
        o.failures.push(why);
        o
    }

    /// Records a measured figure, printed as `key=value`.
    pub fn fig(&mut self, key: &str, value: impl std::fmt::Display) {
        self.figures.push((key.to_string(), value.to_string()));
    }

    /// Records a failure unless `held`; `what` says what was expected and what was seen.
    pub fn expect(&mut self, held: bool, what: impl Into<String>) {
        if !held {
            self.failures.push(what.into());
        }
    }

    pub fn fail(&mut self, what: impl Into<String>) {
        self.failures.push(what.into());
    }

    /// Runs a step whose error ends the attack: recorded as a failure, `None` returned.
    pub fn step<T>(&mut self, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.failures.push(e);
                None
            }
        }
    }

    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    pub fn line(&self, id: &str, name: &str, took: Duration) -> String {
        let figures: Vec<String> = self
            .figures
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let verdict = if self.passed() {
            "PASS".to_string()
        } else {
            format!("FAIL: {}", self.failures.join("; "))
        };
        format!(
            "{id} {name} [{:.1}s] {} {verdict}",
            took.as_secs_f64(),
            figures.join(" ")
        )
    }
}

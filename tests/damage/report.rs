//! The tables printed at the end: outcomes counted by file kind and by
//! command.

use crate::outcome::{Outcome, Record};
use std::collections::BTreeMap;

pub fn table(records: &[Record], row: impl Fn(&Record) -> String, rows: &[String]) -> String {
    let mut counts: BTreeMap<(String, Outcome), usize> = BTreeMap::new();
    for r in records {
        *counts.entry((row(r), r.outcome)).or_default() += 1;
    }
    let used: Vec<Outcome> = Outcome::ALL
        .into_iter()
        .filter(|o| counts.keys().any(|(_, k)| k == o))
        .collect();
    let mut s = format!("{:<22}", "");
    for o in &used {
        s.push_str(&format!("{:>9}", o.label()));
    }
    s.push_str(&format!("{:>9}\n", "total"));
    let mut totals = vec![0; used.len()];
    for r in rows {
        let mut line = format!("{r:<22}");
        let mut sum = 0;
        for (i, o) in used.iter().enumerate() {
            let c = counts.get(&(r.clone(), *o)).copied().unwrap_or(0);
            totals[i] += c;
            sum += c;
            line.push_str(&format!("{c:>9}"));
        }
        if sum > 0 {
            s.push_str(&format!("{line}{sum:>9}\n"));
        }
    }
    s.push_str(&format!("{:<22}", "total"));
    for t in &totals {
        s.push_str(&format!("{t:>9}"));
    }
    s.push_str(&format!("{:>9}\n", records.len()));
    s
}

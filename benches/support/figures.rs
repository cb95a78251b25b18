//! One row of DESIGN §9's figure table, printed by the benches as a `FIGURE|` line that
//! `tests/bench.sh` gathers into one table (figure | benchcam | peer | ratio | target |
//! pass?). The benches' own lines above it say how each number was measured.

/// Prints one row; `pass` is `None` where the row has no target of its own.
pub fn row(
    figure: &str,
    benchcam: &str,
    peer: &str,
    ratio: Option<f64>,
    target: &str,
    pass: Option<bool>,
) {
    let ratio = ratio.map_or_else(|| "—".to_string(), |r| format!("{r:.2}"));
    let pass = match pass {
        Some(true) => "pass",
        Some(false) => "FAIL",
        None => "—",
    };
    println!("FIGURE|{figure}|{benchcam}|{peer}|{ratio}|{target}|{pass}");
}

/// A row whose figure could not be measured on this machine, and why.
pub fn not_measured(figure: &str, why: &str, target: &str) {
    println!("FIGURE|{figure}|—|{why}|—|{target}|NOT MEASURED");
}

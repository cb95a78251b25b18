use super::*;

#[test]
fn ids_are_validated() {
    for good in ["a", "trial-1", "2026.11.24_x", &"x".repeat(64)] {
        assert!(is_experiment_id(good), "{good}");
    }
    for bad in ["", ".hidden", "../x", "a/b", "sp ace", &"x".repeat(65), "é"] {
        assert!(!is_experiment_id(bad), "{bad}");
    }
}

//! "Did you mean": the known name closest to a misspelt one (attribute keys, field names).
//! Its own module, below both `attr` and `expand`, so neither imports the other for it.

/// The closest name, if it is close enough to be a likely typo.
pub(crate) fn closest<'n>(name: &str, names: &[&'n str]) -> Option<&'n str> {
    let max = (name.chars().count() / 3).max(1);
    names
        .iter()
        .map(|n| (levenshtein(name, n), *n))
        .filter(|&(d, _)| d <= max)
        .min_by_key(|&(d, _)| d)
        .map(|(_, n)| n)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let up = row[j + 1];
            row[j + 1] = (diag + usize::from(ca != cb)).min(up + 1).min(row[j] + 1);
            diag = up;
        }
    }
    row[b.len()]
}

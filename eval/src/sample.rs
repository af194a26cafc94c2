//! A deterministic subsample of a prompt file, for suites too large to answer in full on
//! the hardware at hand (CatQA's 550 questions, CoCoNot's 1,001 prompts on a 2-core CPU).
//! The sample is the `n` prompts whose SHA-256 of `"{seed}:{prompt}"` is smallest, kept in
//! file order: it does not depend on an RNG crate's version or on the file's row order,
//! every checkpoint evaluated with the same seed answers the same prompts (so they pair on
//! a scorecard), and anyone can recompute it from the file alone (`sha256sum` will do).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::inputs::SafetyPrompt;

/// `n` prompts of each prompt file, chosen by `seed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    pub n: usize,
    pub seed: u64,
}

impl Sample {
    /// The sample of `prompts` (all of them when there are at most `n`), in their order.
    pub fn apply(self, prompts: Vec<SafetyPrompt>) -> Vec<SafetyPrompt> {
        if prompts.len() <= self.n {
            return prompts;
        }
        let mut keyed: Vec<([u8; 32], usize)> = prompts
            .iter()
            .enumerate()
            .map(|(i, p)| (self.key(&p.prompt), i))
            .collect();
        // Ties (a prompt repeated in the file) fall back to file order.
        keyed.sort_unstable();
        let mut chosen: Vec<usize> = keyed[..self.n].iter().map(|(_, i)| *i).collect();
        chosen.sort_unstable();
        let mut prompts: Vec<Option<SafetyPrompt>> = prompts.into_iter().map(Some).collect();
        chosen
            .into_iter()
            .filter_map(|i| prompts[i].take())
            .collect()
    }

    fn key(self, prompt: &str) -> [u8; 32] {
        Sha256::digest(format!("{}:{prompt}", self.seed)).into()
    }

    /// How the report's model card states it.
    pub fn describe(self) -> String {
        format!(
            "{} prompts of each larger prompt file: the smallest SHA-256 of \"{}:<prompt>\"",
            self.n, self.seed
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::Label;

    fn prompts(n: usize) -> Vec<SafetyPrompt> {
        (0..n)
            .map(|i| SafetyPrompt {
                prompt: format!("prompt {i}"),
                category: "c".into(),
                label: Label::Unsafe,
                source: format!("f:{}", i + 2),
                suite: "s".into(),
                completion: None,
            })
            .collect()
    }

    fn texts(p: &[SafetyPrompt]) -> Vec<&str> {
        p.iter().map(|p| p.prompt.as_str()).collect()
    }

    #[test]
    fn sample_is_seeded_ordered_and_independent_of_row_order() {
        let s = Sample { n: 10, seed: 42 };
        let a = s.apply(prompts(100));
        assert_eq!(a.len(), 10);
        // Deterministic, and in file order.
        assert_eq!(texts(&a), texts(&s.apply(prompts(100))));
        let lines: Vec<usize> = a.iter().map(|p| p.source[2..].parse().unwrap()).collect();
        assert!(lines.windows(2).all(|w| w[0] < w[1]), "{lines:?}");
        // The same prompts whatever the file's row order.
        let mut reversed = prompts(100);
        reversed.reverse();
        let mut b = texts(&s.apply(reversed))
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>();
        b.sort();
        let mut a_sorted: Vec<String> = texts(&a).into_iter().map(str::to_owned).collect();
        a_sorted.sort();
        assert_eq!(a_sorted, b);
        // Another seed, another sample; a small file is kept whole.
        assert_ne!(
            texts(&a),
            texts(&Sample { n: 10, seed: 7 }.apply(prompts(100)))
        );
        assert_eq!(s.apply(prompts(6)).len(), 6);
        // The key is SHA-256 of "seed:prompt", recomputable outside (sha256sum).
        let expected = Sha256::digest(b"42:prompt 3");
        assert_eq!(s.key("prompt 3").as_slice(), expected.as_slice());
    }
}

//! The checker's decision from an image embedding, as diffusers' `StableDiffusionSafetyChecker`
//! makes it in the pipeline (`forward`): cosine similarity with each concept minus its threshold;
//! when any "special care" concept scores above zero, every concept gets 0.01 more; the image is
//! flagged when any concept's score, rounded to three decimals, is above zero.

/// What the checker compares an image with.
#[derive(Clone, Debug)]
pub struct Concepts {
    special: Vec<Concept>,
    concepts: Vec<Concept>,
}

#[derive(Clone, Debug)]
struct Concept {
    /// Normalised to length one.
    unit: Vec<f64>,
    threshold: f64,
}

/// One image's scores (before rounding) and the decision.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// Cosine similarity minus threshold, per special-care concept.
    pub special: Vec<f64>,
    /// The same per concept, plus the special-care adjustment.
    pub concept: Vec<f64>,
    pub nsfw: bool,
}

/// Makes a flagged special-care concept tighten every other one (diffusers' value).
const SPECIAL_ADJUSTMENT: f64 = 0.01;

impl Concepts {
    /// Row-major `[n, dim]` embeddings with their `n` thresholds, special-care concepts first.
    pub fn new(special: (&[f32], &[f32]), concepts: (&[f32], &[f32]), dim: usize) -> Result<Concepts, String> {
        let rows = |(embeds, thresholds): (&[f32], &[f32]), what: &str| {
            if dim == 0 || embeds.len() != thresholds.len() * dim {
                return Err(format!(
                    "{what}: {} values for {} thresholds of dimension {dim}",
                    embeds.len(),
                    thresholds.len()
                ));
            }
            Ok(embeds
                .chunks(dim)
                .zip(thresholds)
                .map(|(row, &t)| Concept { unit: unit(row), threshold: t as f64 })
                .collect::<Vec<_>>())
        };
        Ok(Concepts { special: rows(special, "special_care_embeds")?, concepts: rows(concepts, "concept_embeds")? })
    }

    /// The embedding length the concepts expect.
    pub fn dim(&self) -> usize {
        self.concepts.first().map_or(0, |c| c.unit.len())
    }

    pub fn judge(&self, image_embed: &[f32]) -> Verdict {
        let image = unit(image_embed);
        let score = |c: &Concept| c.unit.iter().zip(&image).map(|(a, b)| a * b).sum::<f64>() - c.threshold;
        let special: Vec<f64> = self.special.iter().map(score).collect();
        let adjustment = if special.iter().any(|&s| fires(s)) { SPECIAL_ADJUSTMENT } else { 0.0 };
        let concept: Vec<f64> = self.concepts.iter().map(|c| score(c) + adjustment).collect();
        let nsfw = concept.iter().any(|&s| fires(s));
        Verdict { special, concept, nsfw }
    }
}

/// diffusers rounds each score to three decimals before comparing it with zero.
fn fires(score: f64) -> bool {
    (score * 1000.0).round() / 1000.0 > 0.0
}

/// `v / max(|v|, 1e-12)`, as torch's `normalize`.
fn unit(v: &[f32]) -> Vec<f64> {
    let norm = v.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>().sqrt().max(1e-12);
    v.iter().map(|&x| x as f64 / norm).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn concepts(special_threshold: f32, threshold: f32) -> Concepts {
        // Special care: the x axis. Concepts: the x axis and the y axis.
        Concepts::new((&[1.0, 0.0], &[special_threshold]), (&[1.0, 0.0, 0.0, 1.0], &[threshold, 0.5]), 2).unwrap()
    }

    #[test]
    fn scores_are_cosine_minus_threshold_and_length_does_not_matter() {
        let v = concepts(2.0, 0.5).judge(&[3.0, 4.0]); // unit (0.6, 0.8)
        assert!((v.special[0] - (0.6 - 2.0)).abs() < 1e-12);
        assert!((v.concept[0] - 0.1).abs() < 1e-12 && (v.concept[1] - 0.3).abs() < 1e-12);
        assert!(v.nsfw);
        assert_eq!(concepts(2.0, 0.5).judge(&[30.0, 40.0]), v);
    }

    #[test]
    fn a_special_care_concept_adds_its_adjustment_to_every_concept() {
        // Along x: cosine 1 with the first concept and 0 with the second.
        let plain = concepts(2.0, 1.005).judge(&[1.0, 0.0]);
        assert!((plain.concept[0] + 0.005).abs() < 1e-6); // thresholds are f32
        assert!(!plain.nsfw);
        let special = concepts(0.9, 1.005).judge(&[1.0, 0.0]);
        assert!((special.concept[0] - 0.005).abs() < 1e-6, "{special:?}");
        assert!(special.nsfw);
    }

    #[test]
    fn scores_are_rounded_to_three_decimals_before_the_comparison() {
        assert!(!fires(0.0004) && fires(0.0006) && !fires(0.0) && !fires(-0.2));
        // 1 - 0.9996 rounds to zero: not flagged although above zero.
        assert!(!concepts(2.0, 0.9996).judge(&[1.0, 0.0]).nsfw);
    }

    #[test]
    fn mismatched_shapes_are_refused() {
        assert!(Concepts::new((&[1.0, 0.0], &[0.5]), (&[1.0, 0.0, 1.0], &[0.5, 0.5]), 2).is_err());
        assert!(Concepts::new((&[], &[]), (&[], &[]), 0).is_err());
    }
}

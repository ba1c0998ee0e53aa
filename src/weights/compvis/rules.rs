//! One rule table for both directions between CompVis/LDM and diffusers names.
//!
//! A [`Rule`] pairs a block prefix on each side (`input_blocks.1.0.` and
//! `down_blocks.0.resnets.0.`) with how names continue under it ([`Inner`]). The rules of a
//! network are generated from its geometry, one per block (so there are finitely many), and a
//! name is renamed in either direction by the rule whose prefix on that side and inner part both
//! match. Loading a single file uses [`Rules::to_diffusers`], exporting one [`Rules::to_ldm`]:
//! the two cannot drift apart.

/// Which way a name is renamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Direction {
    ToDiffusers,
    ToLdm,
}

/// How the names under a block prefix continue.
#[derive(Debug, Clone, Copy)]
pub(super) enum Inner {
    /// `weight` or `bias` of one conv, linear or norm layer.
    Leaf,
    /// Named layers as `(LDM name, diffusers name)`, each followed by a leaf. Towards diffusers
    /// the first pair with a matching LDM name wins, so later pairs may list alternative
    /// (legacy) diffusers names that only the export direction accepts.
    Layers(&'static [(&'static str, &'static str)]),
    /// A spatial transformer: the same names on both sides, checked against the known set.
    Transformer,
}

/// A block prefix on each side (both ending in `.`) and what follows it.
#[derive(Debug, Clone)]
pub(super) struct Rule {
    pub ldm: String,
    pub diffusers: String,
    pub inner: Inner,
}

impl Rule {
    pub fn new(ldm: impl Into<String>, diffusers: impl Into<String>, inner: Inner) -> Self {
        Self {
            ldm: ldm.into(),
            diffusers: diffusers.into(),
            inner,
        }
    }
}

/// The rules of one network.
#[derive(Debug, Clone, Default)]
pub(super) struct Rules(pub Vec<Rule>);

impl Rules {
    /// The diffusers name of an LDM name, or `None` if no rule covers it.
    pub fn to_diffusers(&self, name: &str) -> Option<String> {
        self.rename(name, Direction::ToDiffusers)
    }

    /// The LDM name of a diffusers name, or `None` if no rule covers it.
    pub fn to_ldm(&self, name: &str) -> Option<String> {
        self.rename(name, Direction::ToLdm)
    }

    fn rename(&self, name: &str, dir: Direction) -> Option<String> {
        self.0.iter().find_map(|rule| {
            let (from, to) = match dir {
                Direction::ToDiffusers => (&rule.ldm, &rule.diffusers),
                Direction::ToLdm => (&rule.diffusers, &rule.ldm),
            };
            let rest = name.strip_prefix(from.as_str())?;
            Some(format!("{to}{}", rule.inner.rename(rest, dir)?))
        })
    }
}

impl Inner {
    fn rename(self, rest: &str, dir: Direction) -> Option<String> {
        match self {
            Inner::Leaf => is_leaf(rest).then(|| rest.to_string()),
            Inner::Layers(pairs) => pairs.iter().find_map(|&(ldm, diffusers)| {
                let (from, to) = match dir {
                    Direction::ToDiffusers => (ldm, diffusers),
                    Direction::ToLdm => (diffusers, ldm),
                };
                let leaf = rest.strip_prefix(from)?.strip_prefix('.')?;
                is_leaf(leaf).then(|| format!("{to}.{leaf}"))
            }),
            Inner::Transformer => {
                is_transformer(&rest.split('.').collect::<Vec<_>>()).then(|| rest.to_string())
            }
        }
    }
}

/// Names inside an LDM `SpatialTransformer`: already those of diffusers' `Transformer2DModel`.
fn is_transformer(inner: &[&str]) -> bool {
    match inner {
        ["norm" | "proj_in" | "proj_out", leaf] => is_leaf(leaf),
        ["transformer_blocks", n, block @ ..] => {
            index(n).is_some()
                && match block {
                    ["norm1" | "norm2" | "norm3", leaf] => is_leaf(leaf),
                    ["attn1" | "attn2", "to_q" | "to_k" | "to_v", leaf] => is_leaf(leaf),
                    ["attn1" | "attn2", "to_out", "0", leaf] => is_leaf(leaf),
                    ["ff", "net", "0", "proj", leaf] => is_leaf(leaf),
                    ["ff", "net", "2", leaf] => is_leaf(leaf),
                    _ => false,
                }
        }
        _ => false,
    }
}

/// Parses a block index written in canonical decimal form (no sign, no leading zeros).
pub(super) fn index(s: &str) -> Option<usize> {
    let n: usize = s.parse().ok()?;
    (n.to_string() == s).then_some(n)
}

/// True for the parameter leaves of conv, linear and norm layers.
pub(super) fn is_leaf(s: &str) -> bool {
    s == "weight" || s == "bias"
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAIRS: &[(&str, &str)] = &[("q", "to_q"), ("proj_out", "to_out.0"), ("q", "query")];

    fn rules() -> Rules {
        Rules(vec![
            Rule::new("a.0.", "x.", Inner::Leaf),
            Rule::new("a.1.", "y.", Inner::Layers(PAIRS)),
            Rule::new("a.2.", "z.", Inner::Transformer),
        ])
    }

    #[test]
    fn renames_both_ways_and_only_known_names() {
        let r = rules();
        for (ldm, diffusers) in [
            ("a.0.weight", "x.weight"),
            ("a.1.q.bias", "y.to_q.bias"),
            ("a.1.proj_out.weight", "y.to_out.0.weight"),
            (
                "a.2.transformer_blocks.3.attn2.to_k.weight",
                "z.transformer_blocks.3.attn2.to_k.weight",
            ),
        ] {
            assert_eq!(r.to_diffusers(ldm).as_deref(), Some(diffusers));
            assert_eq!(r.to_ldm(diffusers).as_deref(), Some(ldm));
        }
        // A legacy alias is accepted towards LDM only.
        assert_eq!(r.to_ldm("y.query.weight").as_deref(), Some("a.1.q.weight"));
        for bad in [
            "a.0.scale",
            "a.0",
            "a.1.q",
            "a.1.qq.weight",
            "a.2.transformer_blocks.03.norm1.weight",
            "a.10.weight",
        ] {
            assert_eq!(r.to_diffusers(bad), None, "{bad}");
        }
        assert_eq!(r.to_ldm("x.weight.extra"), None);
    }
}

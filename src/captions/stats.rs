//! How rich a caption set is: length distribution (in words), vocabulary size, duplicate
//! captions and the most frequent words, so that thin captions (the seed's BLIP lesson) show
//! before a training run, not after it.
use serde::Serialize;
use std::collections::HashMap;

/// Words that say nothing about a product; left out of `top_words` (not of the vocabulary).
const STOPWORDS: &[&str] = &[
    "a", "an", "the", "of", "on", "in", "with", "and", "or", "to", "for", "at", "by", "is", "it",
    "its", "this", "that", "there", "are", "from", "as", "be", "has", "some",
];

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LengthStats {
    pub min: usize,
    pub median: f64,
    pub mean: f64,
    pub p90: usize,
    pub max: usize,
    /// (label, count) over word-count buckets.
    pub histogram: Vec<(String, usize)>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CaptionStats {
    pub captions: usize,
    pub empty: usize,
    pub words: usize,
    pub length: LengthStats,
    pub vocabulary: usize,
    /// Distinct caption texts that occur more than once.
    pub duplicated_texts: usize,
    /// Images whose caption is shared with at least one other image.
    pub images_with_duplicate: usize,
    /// The most repeated captions, (text, count), most frequent first.
    pub top_duplicates: Vec<(String, usize)>,
    /// The most frequent words, stopwords left out, (word, count).
    pub top_words: Vec<(String, usize)>,
}

/// Lowercase words (letters, digits, inner apostrophes and hyphens).
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '-'))
        .map(|w| w.trim_matches(|c| c == '\'' || c == '-').to_lowercase())
        .filter(|w| !w.is_empty())
        .collect()
}

const BUCKETS: &[(usize, usize, &str)] = &[
    (0, 0, "0"),
    (1, 4, "1-4"),
    (5, 9, "5-9"),
    (10, 14, "10-14"),
    (15, 19, "15-19"),
    (20, 29, "20-29"),
    (30, 49, "30-49"),
    (50, usize::MAX, "50+"),
];

pub fn compute<'a>(texts: impl IntoIterator<Item = &'a str>, top: usize) -> CaptionStats {
    let mut lengths = Vec::new();
    let mut vocab: HashMap<String, usize> = HashMap::new();
    let mut dup: HashMap<String, usize> = HashMap::new();
    let mut empty = 0;
    for t in texts {
        let w = words(t);
        if w.is_empty() {
            empty += 1;
        }
        lengths.push(w.len());
        for word in w {
            *vocab.entry(word).or_default() += 1;
        }
        let key = t
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase();
        if !key.is_empty() {
            *dup.entry(key).or_default() += 1;
        }
    }
    let n = lengths.len();
    let mut sorted = lengths.clone();
    sorted.sort_unstable();
    let median = match n {
        0 => 0.0,
        _ if n % 2 == 1 => sorted[n / 2] as f64,
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) as f64 / 2.0,
    };
    let p90 = if n == 0 {
        0
    } else {
        sorted[((n as f64 * 0.9).ceil() as usize).clamp(1, n) - 1]
    };
    let histogram = BUCKETS
        .iter()
        .map(|&(lo, hi, label)| {
            (
                label.to_string(),
                lengths.iter().filter(|&&l| l >= lo && l <= hi).count(),
            )
        })
        .collect();
    let mut dups: Vec<(String, usize)> = dup.into_iter().filter(|(_, c)| *c > 1).collect();
    dups.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut top_words: Vec<(String, usize)> = vocab
        .iter()
        .filter(|(w, _)| !STOPWORDS.contains(&w.as_str()))
        .map(|(w, c)| (w.clone(), *c))
        .collect();
    top_words.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    top_words.truncate(top);
    CaptionStats {
        captions: n,
        empty,
        words: lengths.iter().sum(),
        length: LengthStats {
            min: sorted.first().copied().unwrap_or(0),
            median,
            mean: if n == 0 {
                0.0
            } else {
                lengths.iter().sum::<usize>() as f64 / n as f64
            },
            p90,
            max: sorted.last().copied().unwrap_or(0),
            histogram,
        },
        vocabulary: vocab.len(),
        duplicated_texts: dups.len(),
        images_with_duplicate: dups.iter().map(|(_, c)| c).sum(),
        top_duplicates: dups.into_iter().take(top.min(10)).collect(),
        top_words,
    }
}

impl CaptionStats {
    /// A terminal report.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let l = &self.length;
        s += &format!(
            "captions: {} ({} empty), words: {}, vocabulary: {} distinct words\n",
            self.captions, self.empty, self.words, self.vocabulary
        );
        s += &format!(
            "length (words): min {}  median {}  mean {:.1}  p90 {}  max {}\n",
            l.min, l.median, l.mean, l.p90, l.max
        );
        let peak = l
            .histogram
            .iter()
            .map(|(_, c)| *c)
            .max()
            .unwrap_or(0)
            .max(1);
        for (label, count) in &l.histogram {
            let bar = "#".repeat((count * 40).div_ceil(peak));
            s += &format!("  {label:>6} | {bar:<40} {count}\n");
        }
        s += &format!(
            "duplicates: {} caption text(s) shared by {} image(s)\n",
            self.duplicated_texts, self.images_with_duplicate
        );
        for (text, count) in &self.top_duplicates {
            s += &format!("  {count:>5} × {text}\n");
        }
        s += "most frequent words (stopwords left out):\n";
        for (w, c) in &self.top_words {
            s += &format!("  {c:>6}  {w}\n");
        }
        if self.captions > 0 && l.median < 8.0 {
            s += &format!(
                "warning: median caption is {} words; thin captions train a model that ignores prompts (try --template with product metadata)\n",
                l.median
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_lengths_vocabulary_duplicates_and_words() {
        let texts = [
            "a brown leather bag on a white table",
            "a brown leather bag on a white table",
            "A  Brown leather bag on a white table",
            "blue ceramic mug",
            "",
        ];
        let s = compute(texts, 3);
        assert_eq!((s.captions, s.empty, s.words), (5, 1, 27));
        assert_eq!((s.length.min, s.length.max, s.length.p90), (0, 8, 8));
        assert_eq!(s.length.median, 8.0);
        assert_eq!(s.vocabulary, 10);
        assert_eq!(s.duplicated_texts, 1);
        assert_eq!(s.images_with_duplicate, 3);
        assert_eq!(s.top_duplicates[0].1, 3);
        assert_eq!(
            s.top_words,
            vec![
                ("bag".into(), 3),
                ("brown".into(), 3),
                ("leather".into(), 3)
            ]
        );
        let hist: HashMap<_, _> = s.length.histogram.iter().cloned().collect();
        assert_eq!((hist["0"], hist["1-4"], hist["5-9"]), (1, 1, 3));
        assert!(s.render().contains("vocabulary: 10"));
    }

    #[test]
    fn words_keep_inner_apostrophes_and_hyphens() {
        assert_eq!(
            words("Kid's hand-made mug, 12oz!"),
            vec!["kid's", "hand-made", "mug", "12oz"]
        );
    }
}

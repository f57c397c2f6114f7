//! What a comparison produces: differences and their kinds, the verdict and skip reasons
//! (DESIGN.md, "Difference kinds and verdicts"), and the signature that clusters verdicts.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The kind of one difference (DESIGN.md, "Difference kinds and verdicts").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiffKind {
    Value,
    Type,
    Missing,
    Added,
    Length,
    Order,
    Status,
    Header,
    Body,
}

impl DiffKind {
    /// Every kind, in declaration order: `ALL[k.index()] == k`.
    pub const ALL: [DiffKind; 9] = [
        Self::Value,
        Self::Type,
        Self::Missing,
        Self::Added,
        Self::Length,
        Self::Order,
        Self::Status,
        Self::Header,
        Self::Body,
    ];

    /// Position in [`Self::ALL`]: the index of per-kind counter arrays.
    pub const fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DiffKind::Value => "value",
            DiffKind::Type => "type",
            DiffKind::Missing => "missing",
            DiffKind::Added => "added",
            DiffKind::Length => "length",
            DiffKind::Order => "order",
            DiffKind::Status => "status",
            DiffKind::Header => "header",
            DiffKind::Body => "body",
        }
    }
}

/// One difference. `path` is the concrete JSON Pointer into the body, `field` the same with array
/// indices as `*`. Status and header differences use the pseudo-paths `@status` and
/// `@headers/<name>` so they can never be confused with a body pointer (which is `""` or starts
/// with `/`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    pub path: String,
    pub field: String,
    pub kind: DiffKind,
    pub primary: Value,
    pub candidate: Value,
    #[serde(default)]
    pub noise: bool,
    /// A short unified excerpt for `body` differences, or a note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictKind {
    Match,
    Mismatch,
    Noise,
    CandidateError,
    Skipped,
}

impl VerdictKind {
    pub const ALL: [VerdictKind; 5] = [
        Self::Match,
        Self::Mismatch,
        Self::Noise,
        Self::CandidateError,
        Self::Skipped,
    ];

    /// Position in [`Self::ALL`]: the index of per-verdict counter arrays.
    pub const fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            VerdictKind::Match => "match",
            VerdictKind::Mismatch => "mismatch",
            VerdictKind::Noise => "noise",
            VerdictKind::CandidateError => "candidate_error",
            VerdictKind::Skipped => "skipped",
        }
    }
}

/// Why an exchange was not compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    MethodNotMirrored,
    SampledOut,
    BodyTooLarge,
    ShadowQueueFull,
    CompareQueueFull,
    CircuitOpen,
    ShadowLoop,
    PrimaryError,
    /// Keeping the copies would have crossed `shadow.max_buffered_bytes`.
    MemoryBudget,
    /// The proxy's I/O threads were saturated (`shadow.overload`): forwarding came first.
    Overload,
}

impl SkipReason {
    pub const ALL: [SkipReason; 10] = [
        Self::MethodNotMirrored,
        Self::SampledOut,
        Self::BodyTooLarge,
        Self::ShadowQueueFull,
        Self::CompareQueueFull,
        Self::CircuitOpen,
        Self::ShadowLoop,
        Self::PrimaryError,
        Self::MemoryBudget,
        Self::Overload,
    ];

    /// Position in [`Self::ALL`]: the index of per-reason counter arrays.
    pub const fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::MethodNotMirrored => "method_not_mirrored",
            SkipReason::SampledOut => "sampled_out",
            SkipReason::BodyTooLarge => "body_too_large",
            SkipReason::ShadowQueueFull => "shadow_queue_full",
            SkipReason::CompareQueueFull => "compare_queue_full",
            SkipReason::CircuitOpen => "circuit_open",
            SkipReason::ShadowLoop => "shadow_loop",
            SkipReason::PrimaryError => "primary_error",
            SkipReason::MemoryBudget => "memory_budget",
            SkipReason::Overload => "overload",
        }
    }
}

/// The outcome of comparing one exchange.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub kind: VerdictKind,
    pub skip_reason: Option<SkipReason>,
    pub differences: Vec<Difference>,
    /// Stable hash of the set of (field, kind) pairs; `None` for match and skipped.
    pub signature: Option<String>,
    /// Remarks a reviewer needs (for example "declared JSON but invalid; compared as text").
    pub notes: Vec<String>,
    /// More differences existed than `max_differences`; the list is a prefix.
    pub truncated: bool,
    /// primary-vs-secondary differences, when a secondary answered: what noise learning counts.
    #[serde(skip)]
    pub secondary_differences: Option<Vec<Difference>>,
}

impl Verdict {
    pub fn skipped(reason: SkipReason) -> Self {
        Verdict {
            kind: VerdictKind::Skipped,
            skip_reason: Some(reason),
            differences: Vec::new(),
            signature: None,
            notes: Vec::new(),
            truncated: false,
            secondary_differences: None,
        }
    }

    pub(super) fn from_differences(
        differences: Vec<Difference>,
        notes: Vec<String>,
        truncated: bool,
    ) -> Self {
        let kind = if differences.is_empty() {
            VerdictKind::Match
        } else {
            VerdictKind::Mismatch
        };
        let signature = (!differences.is_empty()).then(|| signature(&differences));
        Verdict {
            kind,
            skip_reason: None,
            differences,
            signature,
            notes,
            truncated,
            secondary_differences: None,
        }
    }
}

impl Verdict {
    /// Recomputes the signature after noise marking: a mismatch is signed by its real
    /// differences only, so the same failure clusters together whatever noise came with it in
    /// each exchange; a verdict made only of noise is signed by all of it.
    pub fn resign(&mut self) {
        if self.differences.is_empty() {
            return;
        }
        let any_real = self.differences.iter().any(|d| !d.noise);
        self.signature = Some(signature_of(
            self.differences.iter().filter(|d| !any_real || !d.noise),
        ));
    }
}

/// Stable 32-bit hex hash of the set of (field, kind) pairs: identical failures share it, across
/// runs and machines (SHA-256 of the sorted, de-duplicated pairs).
pub fn signature(diffs: &[Difference]) -> String {
    signature_of(diffs.iter())
}

fn signature_of<'a>(diffs: impl Iterator<Item = &'a Difference>) -> String {
    let mut pairs: Vec<(&str, &str)> = diffs.map(|d| (d.field.as_str(), d.kind.as_str())).collect();
    pairs.sort_unstable();
    pairs.dedup();
    signature_hash(
        pairs
            .iter()
            .flat_map(|(f, k)| [f.as_bytes(), &[0], k.as_bytes(), b"\n"]),
    )
}

/// The one signature hash: the first 4 bytes of SHA-256 over `parts`, in hex. Every signature
/// (differences, candidate errors) goes through it, so they share a format and a space.
pub(super) fn signature_hash<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize()
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect()
}

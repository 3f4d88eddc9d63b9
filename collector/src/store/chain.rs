//! Deciding what to do with a verified report given what is already stored
//! for its device: the hash-chain and sequence rules of design §4.
//!
//! Pure: the store calls [`decide`] (through [`super::batch_plan`]) inside
//! the transaction that holds the device's row, so the decision and the
//! write see the same state. It lives in the store, not in ingest, because
//! the store is what applies it and the store imports nothing from the
//! layers above it.

/// What the store knows about a device's chain when a report arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainState {
    /// The highest sequence stored for the device, if any.
    pub last_sequence: Option<u64>,
    /// The digest of the report stored at `last_sequence`.
    pub last_digest: Option<String>,
    /// The digest already stored at the incoming report's sequence, if any.
    pub digest_at_sequence: Option<String>,
}

/// The facts of the incoming report that the decision needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingLink<'a> {
    pub sequence: u64,
    pub digest: &'a str,
    pub prev_digest: &'a str,
}

/// What to do with the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainDecision {
    /// Store it. The flags are recorded on the device, never a reason to
    /// refuse: a gap means reports were lost (the agent's spool dropped them,
    /// or they were purged), a broken link means the history was rewritten or
    /// the agent's state was reset; IT needs to see both.
    Store {
        sequence_gap: bool,
        chain_broken: bool,
    },
    /// The same report again (a retry after a lost acknowledgement): answer
    /// 200 and store nothing.
    Duplicate,
    /// Another report already holds this sequence, or the sequence is below
    /// one already stored: answer 409.
    Conflict { reason: ConflictReason },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictReason {
    SequenceTakenByAnotherDigest,
    SequenceBelowStored,
}

impl ConflictReason {
    pub fn message(self) -> &'static str {
        match self {
            Self::SequenceTakenByAnotherDigest => {
                "a different report is already stored with this sequence number"
            }
            Self::SequenceBelowStored => "the sequence number is below one already stored",
        }
    }
}

pub fn decide(state: &ChainState, incoming: &IncomingLink<'_>) -> ChainDecision {
    match &state.digest_at_sequence {
        Some(stored) if stored == incoming.digest => return ChainDecision::Duplicate,
        Some(_) => {
            return ChainDecision::Conflict {
                reason: ConflictReason::SequenceTakenByAnotherDigest,
            };
        }
        None => {}
    }
    match state.last_sequence {
        Some(last) if incoming.sequence < last => ChainDecision::Conflict {
            reason: ConflictReason::SequenceBelowStored,
        },
        Some(last) => ChainDecision::Store {
            sequence_gap: incoming.sequence != last + 1,
            // Only the direct successor can be checked against the stored
            // digest; after a gap the missing report's digest is unknown.
            chain_broken: incoming.sequence == last + 1
                && state.last_digest.as_deref() != Some(incoming.prev_digest),
        },
        None => ChainDecision::Store {
            sequence_gap: incoming.sequence != 1,
            chain_broken: incoming.sequence == 1 && !incoming.prev_digest.is_empty(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(last: Option<(u64, &str)>, at_sequence: Option<&str>) -> ChainState {
        ChainState {
            last_sequence: last.map(|(s, _)| s),
            last_digest: last.map(|(_, d)| d.to_owned()),
            digest_at_sequence: at_sequence.map(str::to_owned),
        }
    }

    fn link<'a>(sequence: u64, digest: &'a str, prev_digest: &'a str) -> IncomingLink<'a> {
        IncomingLink {
            sequence,
            digest,
            prev_digest,
        }
    }

    fn store(sequence_gap: bool, chain_broken: bool) -> ChainDecision {
        ChainDecision::Store {
            sequence_gap,
            chain_broken,
        }
    }

    #[test]
    fn decision_table() {
        use ConflictReason::*;
        let cases = [
            (
                "first report",
                state(None, None),
                link(1, "a", ""),
                store(false, false),
            ),
            (
                "first seen at 5: gap",
                state(None, None),
                link(5, "e", "d"),
                store(true, false),
            ),
            (
                "first with a prev digest",
                state(None, None),
                link(1, "a", "z"),
                store(false, true),
            ),
            (
                "successor",
                state(Some((1, "a")), None),
                link(2, "b", "a"),
                store(false, false),
            ),
            (
                "successor, wrong link",
                state(Some((1, "a")), None),
                link(2, "b", "x"),
                store(false, true),
            ),
            (
                "skip one",
                state(Some((1, "a")), None),
                link(3, "c", "b"),
                store(true, false),
            ),
            (
                "retry",
                state(Some((2, "b")), Some("b")),
                link(2, "b", "a"),
                ChainDecision::Duplicate,
            ),
            (
                "same sequence, other digest",
                state(Some((2, "b")), Some("b")),
                link(2, "B", "a"),
                ChainDecision::Conflict {
                    reason: SequenceTakenByAnotherDigest,
                },
            ),
            (
                "below the last stored",
                state(Some((5, "e")), None),
                link(3, "c", "b"),
                ChainDecision::Conflict {
                    reason: SequenceBelowStored,
                },
            ),
            (
                "retry of an older stored report",
                state(Some((5, "e")), Some("c")),
                link(3, "c", "b"),
                ChainDecision::Duplicate,
            ),
        ];
        for (name, state, incoming, expected) in cases {
            assert_eq!(decide(&state, &incoming), expected, "case: {name}");
        }
    }
}

//! The answer reader as the fuzz target `wire` (`fuzz/`) and its corpus replay
//! (`tests/fuzz_corpus.rs`) drive it: any byte stream, delivered in any reads, exactly as
//! [`super::ShadowClient::send`] consumes a socket after writing the request. Not an API.

use super::{Answer, ShadowError};
use crate::pipeline::budget::Reservation;
use tokio::io::AsyncRead;

/// Reads one answer from `io` (head, interim answers, body by its framing) under `cap` and the
/// budget behind `held`; also whether the connection could carry another request.
pub async fn read_answer<R: AsyncRead + Unpin>(
    io: &mut R,
    head_request: bool,
    cap: usize,
    held: &mut Reservation,
) -> Result<(Answer, bool), ShadowError> {
    super::wire::read_answer(io, head_request, cap, held)
        .await
        .map_err(|f| f.error)
}

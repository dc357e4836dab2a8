# Settings shared by the scripts in this folder; sourced, not run.

# Keep build output outside the checkout so a fresh clone reuses it.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/madrpc/target}"
MADRPC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export MADRPC_ROOT

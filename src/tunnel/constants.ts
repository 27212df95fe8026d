/**
 * Every number of the tunnel protocol (PROTOCOL.md) and every default of this implementation, with its unit in
 * its name. Wire values are pinned by test/unit/tunnel/constants.test.ts: changing one breaks compatibility.
 */

/** The version byte of every frame (PROTOCOL.md §2). */
export const PROTOCOL_VERSION = 0x01

/** WebSocket sub-protocol the agent offers and the proxy must select (PROTOCOL.md §1.1). */
export const SUBPROTOCOL = 'ksctl-tunnel.v1'

/** version u8, type u8, flags u16, stream id u32. */
export const FRAME_HEADER_BYTES = 8

/** Largest DATA payload a receiver accepts. */
export const MAX_DATA_PAYLOAD_BYTES = 256 * 1024

/** Largest WebSocket message, hence the `maxPayload` to give `ws` on both ends. */
export const MAX_FRAME_BYTES = FRAME_HEADER_BYTES + MAX_DATA_PAYLOAD_BYTES

/** Every stream starts with this much credit in each direction. */
export const INITIAL_WINDOW_BYTES = 256 * 1024

/** No stream window, and no sender's credit, may grow beyond this. */
export const MAX_WINDOW_BYTES = 16 * 1024 * 1024

/** Destination names are DNS-like and at most this long. */
export const MAX_DESTINATION_BYTES = 253

/** Lowercase labels separated by `.`, `-` or `_`; never an address with a port. */
export const DESTINATION_PATTERN = /^[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?$/

/** PING and PING+ACK carry exactly this many opaque bytes. */
export const PING_PAYLOAD_BYTES = 8

/** WINDOW_UPDATE payload: the u32 delta. */
export const WINDOW_DELTA_BYTES = 4

/** RST and GO_AWAY carry a u32 error code. */
export const ERROR_CODE_BYTES = 4

/** Stream id 0 addresses the session (PING, GO_AWAY). */
export const SESSION_STREAM_ID = 0

/** The proxy's first stream id; it then counts up by 2 (odd ids only). */
export const FIRST_STREAM_ID = 1

export const MAX_STREAM_ID = 0xffffffff

/**
 * Payload size of the DATA frames this implementation sends. Large frames are cheap for ws (one send
 * callback per frame, one mask pass); 64 KiB keeps four frames in flight per 256 KiB window.
 */
export const DATA_FRAME_BYTES = 64 * 1024

/**
 * Default concurrent stream limit of a session (each side enforces its own). Host clients hold a stream per
 * watch, and thousands of watches through one agent are normal for a busy console, so it is high; what an
 * idle watch costs is its buffers, not its window.
 */
export const MAX_CONCURRENT_STREAMS = 16_384

/**
 * What one session may hold of data received and not yet read by its streams' readers. A stream holds at most its
 * window, so only many stalled readers at once reach it; then the stream holding the most is reset (BUFFER_LIMIT),
 * as kube-apiserver drops its slowest watchers, and the others go on.
 */
export const SESSION_BUFFER_BUDGET_BYTES = 64 * 1024 * 1024

/** Both sides send a PING this often. */
export const PING_INTERVAL_MS = 10_000

/**
 * How long a PING may go unanswered, with nothing else from the peer, before the peer counts as unresponsive (at
 * most the ping interval): the proxy sends no new stream to it until it is heard from again.
 */
export const PING_ANSWER_DEADLINE_MS = 2_000

/** A link with no frame received for this many ping intervals is dead. */
export const KEEPALIVE_MISSED_INTERVALS = 3

/** PINGs arriving while this many PING+ACK answers are still unsent are dropped. */
export const MAX_PENDING_PONGS = 4

/** How long the proxy waits for ACK or RST after SYN. */
export const STREAM_OPEN_TIMEOUT_MS = 30_000

/** After sending FIN, how long a stream may stay silent before it is reset. */
export const STREAM_CLOSE_TIMEOUT_MS = 5 * 60_000

/** After GO_AWAY, how long open streams may take to finish. */
export const GO_AWAY_GRACE_MS = 30_000

/** After sending a WebSocket close frame, how long to wait for the peer's before dropping the socket. */
export const CLOSE_HANDSHAKE_TIMEOUT_MS = 5_000

/**
 * DATA payloads smaller than this are copied into shared blocks while the reader is behind, so that a peer
 * sending tiny frames cannot make a stream hold thousands of small buffers (each costs far more than its bytes).
 */
export const SMALL_PAYLOAD_BYTES = 4 * 1024

/** Size of the blocks small payloads are gathered into. */
export const GATHER_BLOCK_BYTES = 16 * 1024

/** High-water mark of a stream's readable side. The window, not this, bounds what a stream buffers. */
export const STREAM_READ_HIGH_WATER_MARK_BYTES = 64 * 1024

/** WebSocket close codes (RFC 6455 §7.4.1) used by the tunnel (PROTOCOL.md §10). */
export const CloseCode = {
  Normal: 1000,
  GoingAway: 1001,
  ProtocolError: 1002,
  PolicyViolation: 1008,
  MessageTooBig: 1009,
  InternalError: 1011,
} as const

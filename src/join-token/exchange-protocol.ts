/**
 * The join exchange's wire contract (src/tunnel/JOIN-EXCHANGE.md): paths, bodies and error codes, shared by the
 * proxy that serves it and the member-side command that calls it. Plain data only: both sides import this file.
 */
import type {Edition} from '../kubesphere/detect.js'

export const JOIN_PATH_PREFIX = '/ksctl/join/v1/'
/** Verifies a join token without using it: what the member side asks before it checks the member. */
export const CHECK_PATH = `${JOIN_PATH_PREFIX}check`
/** Uses a join token, once, for the cluster's agent token (and, on 3.x, the host's jwtSecret). */
export const EXCHANGE_PATH = `${JOIN_PATH_PREFIX}exchange`
/** The host's view of a cluster, for whoever holds its agent token. */
export const STATUS_PATH = `${JOIN_PATH_PREFIX}status`
/** Largest request body the proxy reads. */
export const MAX_REQUEST_BYTES = 16 * 1024

/** What the member sends to check or exchange. */
export interface JoinRequest {
  /** The cluster name the member was told to register as. */
  cluster: string
  /** `ID.SECRET`. */
  token: string
  /** The member's kube-system namespace UID: who uses the token, and whether it is the Cluster's member. */
  memberUid: string
}

export interface CheckResponse {
  cluster: string
  edition: Edition
  /** The host's name for itself, which a 4.x member records as its managing host. */
  hostClusterName?: string
  /** RFC 3339. */
  expiresAt: string
}

export interface ExchangeResponse {
  cluster: string
  edition: Edition
  hostClusterName?: string
  /** `spec.connection.token` of the Cluster: what the agent authenticates with. */
  agentToken: string
  /** 3.x: the host's `authentication.jwtSecret`, which the member must share. Absent on 4.x. */
  jwtSecret?: string
}

export interface StatusResponse {
  cluster: string
  /** Condition type → status of the host's Cluster (Initialized, AgentAvailable, Ready…). */
  conditions: Record<string, string>
  ready: boolean
}

/** Why the proxy refused a request: stable codes the member side turns into its messages. */
export const joinErrorCodes = {
  /** Not `ID.SECRET` at all; nothing was looked up. */
  token_malformed: 400,
  /** No token has this ID, or its secret is wrong (one answer for both). */
  token_invalid: 401,
  /** Issued for another cluster than the one the member registers as. */
  token_wrong_cluster: 403,
  token_expired: 410,
  /** Used once already: a join token is good for one exchange. */
  token_used: 410,
  token_revoked: 410,
  /** The Cluster the token was issued for was deleted (or deleted and created again). */
  cluster_not_found: 404,
  /** The proxy has not initialized the Cluster yet (no agent token): try again shortly. */
  cluster_not_initialized: 503,
  /** The Cluster stands for another member, or this member is registered under another name. */
  member_mismatch: 409,
  /** The agent token presented for a status is not the cluster's. */
  unauthorized: 401,
  /** The exchange is served over TLS only (the proxy runs with --insecure-plain). */
  tls_required: 403,
  /** Too many failures from this address: wait for Retry-After. */
  rate_limited: 429,
  bad_request: 400,
  /** The proxy could not read or write what the exchange needs on the host. */
  host_error: 502,
} as const

export type JoinErrorCode = keyof typeof joinErrorCodes

export interface JoinErrorBody {
  error: {code: JoinErrorCode; message: string}
}

export function isJoinErrorCode(value: unknown): value is JoinErrorCode {
  return typeof value === 'string' && Object.hasOwn(joinErrorCodes, value)
}

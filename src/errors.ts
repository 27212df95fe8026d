/**
 * Every exit code ksctl uses. The README's "Exit codes" table is written from this enum; keep them in step.
 */
export enum ExitCode {
  /** The command did what was asked, or reported information (a plain cluster is information, not failure). */
  Success = 0,
  /** A runtime failure: the API server refused or failed, the network or the tunnel broke, a wait timed out. */
  Failure = 1,
  /**
   * Bad usage or input: unknown flag, malformed value, missing value without a TTY to ask for it; or a
   * Node.js outside package.json's engines (set in bin/node-version.js, which runs before this module).
   */
  Usage = 2,
  /** An unknown command, as shells report one; set by oclif's not-found plugin (package.json oclif.plugins). */
  CommandNotFound = 127,
  /** Interrupted: Ctrl-C (SIGINT, as shells report it) or SIGTERM, at a prompt or during a run. */
  Interrupted = 130,
}

/** Stable machine-readable error codes, part of the `--json` contract. */
export type ErrorCode =
  | 'USAGE'
  | 'INVALID_INPUT'
  | 'KUBECONFIG_NOT_FOUND'
  | 'KUBECONFIG_MALFORMED'
  | 'CONTEXT_NOT_FOUND'
  | 'NOT_FOUND'
  | 'FORBIDDEN'
  | 'UNAUTHORIZED'
  | 'CONFLICT'
  | 'UNREACHABLE'
  | 'TLS_VERIFICATION_FAILED'
  | 'TIMEOUT'
  | 'API_ERROR'
  | 'UNSUPPORTED'
  | 'PRECONDITION_FAILED'
  | 'INTERRUPTED'
  | 'INTERNAL'

/** The Kubernetes object an error is about, so every message can name it. */
export interface ObjectRef {
  /** Resource as a user types it for kubectl: `configmaps`, `clusters.cluster.kubesphere.io`. */
  resource: string
  /** API group of `resource` (`apps`, `cluster.kubesphere.io`); absent for the core group. */
  group?: string
  name?: string
  namespace?: string
}

export interface KsctlErrorOptions {
  code: ErrorCode
  exitCode?: ExitCode
  /** kubeconfig context the failing operation ran against. */
  context?: string
  object?: ObjectRef
  /** What the user can do next; each entry is one line, usually a command. */
  suggestions?: string[]
  cause?: unknown
}

const defaultExitCodes: Partial<Record<ErrorCode, ExitCode>> = {
  USAGE: ExitCode.Usage,
  INVALID_INPUT: ExitCode.Usage,
  KUBECONFIG_NOT_FOUND: ExitCode.Usage,
  KUBECONFIG_MALFORMED: ExitCode.Usage,
  CONTEXT_NOT_FOUND: ExitCode.Usage,
  INTERRUPTED: ExitCode.Interrupted,
}

/** The one error type ksctl's library throws at users. The base command renders it and exits with `exitCode`. */
export class KsctlError extends Error {
  override readonly name = 'KsctlError'
  readonly code: ErrorCode
  readonly exitCode: ExitCode
  readonly context: string | undefined
  readonly object: ObjectRef | undefined
  readonly suggestions: string[]

  constructor(message: string, options: KsctlErrorOptions) {
    super(message, {cause: options.cause})
    this.code = options.code
    this.exitCode = options.exitCode ?? defaultExitCodes[options.code] ?? ExitCode.Failure
    this.context = options.context
    this.object = options.object
    this.suggestions = options.suggestions ?? []
  }
}

export function usageError(message: string, suggestions: string[] = []): KsctlError {
  return new KsctlError(message, {code: 'USAGE', suggestions})
}

export function invalidInput(message: string, suggestions: string[] = []): KsctlError {
  return new KsctlError(message, {code: 'INVALID_INPUT', suggestions})
}

/** `configmap kubesphere-system/kubesphere-config` — how messages name an object. */
export function describeObject(object: ObjectRef): string {
  if (object.name === undefined) {
    return object.namespace === undefined
      ? object.resource
      : `${object.resource} in namespace ${object.namespace}`
  }
  const name = object.namespace === undefined ? object.name : `${object.namespace}/${object.name}`
  return `${object.resource} ${name}`
}

/** The cluster is not in a state the command can work from; nothing was changed. */
export function preconditionFailed(message: string, context: string, suggestions: string[]): KsctlError {
  return new KsctlError(message, {code: 'PRECONDITION_FAILED', context, suggestions})
}

import {ApiException} from '@kubernetes/client-node'

import {describeObject, KsctlError, type ErrorCode, type ObjectRef} from '../errors.js'
import {redact} from '../redact.js'

/** What a request was doing, so that a failure can say it in the user's words. */
export interface Operation {
  verb: 'get' | 'list' | 'create' | 'update' | 'patch' | 'delete' | 'watch'
  object: ObjectRef
}

interface StatusBody {
  message?: string
  reason?: string
}

const tlsErrorCodes = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'CERT_SIGNATURE_FAILURE',
])

const unreachableCodes = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_SOCKET',
  'EPIPE',
])

export function statusCodeOf(error: unknown): number | undefined {
  return error instanceof ApiException ? error.code : undefined
}

export function isNotFound(error: unknown): boolean {
  return statusCodeOf(error) === 404 || (error instanceof KsctlError && error.code === 'NOT_FOUND')
}

export function isConflict(error: unknown): boolean {
  return statusCodeOf(error) === 409 || (error instanceof KsctlError && error.code === 'CONFLICT')
}

/**
 * A failure that says nothing about the object, only that the server or the network could not answer this
 * time: too many requests (429), a server error (5xx), no connection (refused, reset, unreachable), or one
 * request's time-out. A wait retries these until its deadline; anything else (403, 404, 401, TLS) is final.
 */
export function isTransient(error: unknown): boolean {
  if (!(error instanceof KsctlError)) return false
  if (error.code === 'UNREACHABLE' || error.code === 'TIMEOUT') return true
  const status = statusCodeOf(error.cause)
  return error.code === 'API_ERROR' && status !== undefined && (status === 429 || status >= 500)
}

/**
 * Turns whatever client-node or the network threw into a KsctlError that names the object, the context
 * and the server, keeps the API server's own message, and says what to try next.
 */
export function toKsctlError(
  error: unknown,
  operation: Operation,
  context: string,
  server: string,
): KsctlError {
  if (error instanceof KsctlError) return error
  const subject = describeObject(operation.object)
  const where = `context "${context}"`
  if (error instanceof ApiException) {
    const status = parseStatus(error.body)
    const apiMessage = status.message === undefined ? '' : `: ${redact(status.message)}`
    const make = (code: ErrorCode, message: string, suggestions: string[]): KsctlError =>
      new KsctlError(message, {code, context, object: operation.object, suggestions, cause: error})
    switch (error.code) {
      case 401:
        return make(
          'UNAUTHORIZED',
          `unauthorized: the API server at ${server} rejected the credentials of ${where}`,
          [
            `refresh the credentials of ${where} (an expired token or certificate is the usual cause)`,
            `check them with: kubectl --context ${context} auth whoami`,
          ],
        )
      case 403:
        return make('FORBIDDEN', `forbidden: cannot ${operation.verb} ${subject} in ${where}${apiMessage}`, [
          `ask a cluster administrator for "${operation.verb}" on ${operation.object.resource}` +
            (operation.object.namespace === undefined ? '' : ` in namespace ${operation.object.namespace}`),
          `check with: kubectl --context ${context} auth can-i ${operation.verb} ${operation.object.resource}` +
            (operation.object.namespace === undefined ? '' : ` -n ${operation.object.namespace}`),
        ])
      case 404:
        return make('NOT_FOUND', `${subject} not found in ${where}${apiMessage}`, [
          `check with: kubectl --context ${context} get ${operation.object.resource}` +
            (operation.object.namespace === undefined ? '' : ` -n ${operation.object.namespace}`),
        ])
      case 409:
        return make('CONFLICT', `conflict on ${subject} in ${where}${apiMessage}`, [
          'someone else changed the object at the same time; run the command again',
        ])
      default:
        return make(
          'API_ERROR',
          `the API server of ${where} failed to ${operation.verb} ${subject} (HTTP ${error.code})${apiMessage}`,
          [`retry; if it persists, check the API server of ${where}`],
        )
    }
  }
  const code = networkCode(error)
  if (code !== undefined && tlsErrorCodes.has(code)) {
    return new KsctlError(
      `TLS verification failed for the API server of ${where} at ${server} (${code}): ` +
        'its certificate is not signed by the certificate authority in the kubeconfig',
      {
        code: 'TLS_VERIFICATION_FAILED',
        context,
        object: operation.object,
        cause: error,
        suggestions: [
          `check certificate-authority-data of the cluster of ${where}, or that ${server} is the right server`,
        ],
      },
    )
  }
  if (code !== undefined && unreachableCodes.has(code)) {
    return new KsctlError(`cannot reach the API server of ${where} at ${server} (${code})`, {
      code: 'UNREACHABLE',
      context,
      object: operation.object,
      cause: error,
      suggestions: [
        `check that the cluster is running and ${server} is reachable from here`,
        `try: kubectl --context ${context} get --raw /readyz`,
      ],
    })
  }
  return new KsctlError(
    `failed to ${operation.verb} ${subject} in ${where}: ${redact(causeChainText(error))}`,
    {
      code: 'API_ERROR',
      context,
      object: operation.object,
      cause: error,
    },
  )
}

function parseStatus(body: unknown): StatusBody {
  if (typeof body === 'string') {
    try {
      return parseStatus(JSON.parse(body))
    } catch {
      return body.trim() === '' ? {} : {message: body.trim()}
    }
  }
  if (typeof body === 'object' && body !== null) {
    const record = body as Record<string, unknown>
    return {
      ...(typeof record.message === 'string' ? {message: record.message} : {}),
      ...(typeof record.reason === 'string' ? {reason: record.reason} : {}),
    }
  }
  return {}
}

/** The errno-style code of a network failure, looked for along the `cause` chain that fetch builds. */
function networkCode(error: unknown): string | undefined {
  let current: unknown = error
  for (let depth = 0; depth < 5 && current !== undefined && current !== null; depth++) {
    if (typeof current === 'object' && 'code' in current && typeof current.code === 'string') {
      if (tlsErrorCodes.has(current.code) || unreachableCodes.has(current.code)) return current.code
    }
    current = typeof current === 'object' && 'cause' in current ? current.cause : undefined
  }
  return undefined
}

/** `fetch failed (bad port)`: the message of an error and of each cause, which is where fetch says why. */
function causeChainText(error: unknown): string {
  const parts: string[] = []
  let current: unknown = error
  for (let depth = 0; depth < 5 && current instanceof Error; depth++) {
    parts.push(current.message)
    current = current.cause
  }
  if (parts.length === 0) return String(error)
  return `${parts[0] ?? ''}${parts.length > 1 ? ` (${parts.slice(1).join(': ')})` : ''}`
}

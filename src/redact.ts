import {createHash} from 'node:crypto'

/**
 * `sha256:` and the first 8 hex digits of the value's SHA-256: enough for a person to tell whether two
 * secrets are the same, useless for recovering either.
 */
export function fingerprint(secret: string | Buffer): string {
  return `sha256:${createHash('sha256').update(secret).digest('hex').slice(0, 8)}`
}

const REDACTED = '<redacted>'
const SECRET_KEYS =
  'jwtSecret|token|password|secret|client-key-data|client-key|private-key|privateKey|access-token'
const SECRET_VALUE = `(?!<|sha256:)[^\\s"',}&]{4,}`

/**
 * Shapes of secrets that can appear in text ksctl did not write itself (API server messages, kubeconfigs,
 * command lines, manifests). Known values are redacted exactly; these catch the ones ksctl was never told.
 */
const secretPatterns: {pattern: RegExp; replace: string}[] = [
  {
    pattern: /-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----[\s\S]*?(-----END \1PRIVATE KEY-----|$)/g,
    replace: `-----BEGIN $1PRIVATE KEY----- ${REDACTED} -----END $1PRIVATE KEY-----`,
  },
  {pattern: /\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}/gi, replace: `$1 ${REDACTED}`},
  {pattern: /\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*/g, replace: REDACTED},
  // key: value in YAML (at a line start), "key": value in JSON, key=value in flags and environments;
  // placeholders (<...>) and fingerprints (sha256:...) are not secrets.
  {
    pattern: new RegExp(`(["'](?:${SECRET_KEYS})["']\\s*:\\s*)(["']?)${SECRET_VALUE}\\2`, 'gi'),
    replace: `$1$2${REDACTED}$2`,
  },
  {
    pattern: new RegExp(`^(\\s*(?:-\\s+)?(?:${SECRET_KEYS})\\s*:\\s*)(["']?)${SECRET_VALUE}\\2`, 'gim'),
    replace: `$1$2${REDACTED}$2`,
  },
  {
    pattern: new RegExp(`(\\b(?:${SECRET_KEYS})=)(["']?)${SECRET_VALUE}\\2`, 'gi'),
    replace: `$1$2${REDACTED}$2`,
  },
  {pattern: /(--(?:token|jwt-secret|password)[= ])(?!<)\S+/g, replace: `$1${REDACTED}`},
  {pattern: /(?<![0-9a-f:])(?<!sha256:)[0-9a-f]{64}(?![0-9a-f])/gi, replace: REDACTED},
]

/**
 * Removes secrets from text before it reaches a terminal, a log or an error. Every output path of ksctl
 * goes through one instance (`redactor`); code that reads a secret registers it here first.
 */
export class Redactor {
  private readonly known = new Map<string, string>()

  /** Remember a secret value (and its base64 form) so that any later text containing it is redacted. */
  register(secret: unknown): void {
    if (typeof secret !== 'string' || secret.length < 4) return
    const marker = `<redacted ${fingerprint(secret)}>`
    this.known.set(secret, marker)
    this.known.set(Buffer.from(secret).toString('base64'), marker)
  }

  redact(text: string): string {
    let result = text
    for (const [secret, marker] of [...this.known].sort((a, b) => b[0].length - a[0].length)) {
      result = result.split(secret).join(marker)
    }
    for (const {pattern, replace} of secretPatterns) {
      result = result.replace(pattern, replace)
    }
    return result
  }
}

export const redactor = new Redactor()

export function redact(text: string): string {
  return redactor.redact(text)
}

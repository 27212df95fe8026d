import {createHash} from 'node:crypto'

import {dump, load} from 'js-yaml'

/**
 * `sha256:` and the first 8 hex digits of the value's SHA-256: enough for a person to tell whether two
 * secrets are the same, useless for recovering either.
 */
export function fingerprint(secret: string | Buffer): string {
  return `sha256:${createHash('sha256').update(secret).digest('hex').slice(0, 8)}`
}

/** How a known secret is shown: its fingerprint, so that a changed secret shows as a different one. */
export function secretMarker(secret: string | Buffer): string {
  return `<redacted ${fingerprint(secret)}>`
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
    const marker = secretMarker(secret)
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

/**
 * Values the user asked to see as they are (the agent manifest with its token, on stdout or in `--json`).
 * The object redactor passes them through; everything else it meets is redacted.
 */
const revealedValues = new WeakSet<object>()

/** Marks `value` as output the user asked for, credentials included; returns it for chaining. */
export function revealed<T extends object>(value: T): T {
  revealedValues.add(value)
  return value
}

/**
 * Names whose string value is a credential wherever they appear: keys of API objects, kubeconfigs and
 * KubeSphere's settings (jwtSecret, adminPassword, client-key-data, token, id-token, client-secret),
 * command-line flags (--token, --jwt-secret) and environment variables (AGENT_TOKEN, DB_PASSWORD).
 */
const CREDENTIAL_NAME =
  /(?:token|secret|password|passwd|key-data|private-key|privatekey|secret-key|secretkey|secret-access-key|secretaccesskey|api-key|apikey)$/

function isCredentialName(name: string): boolean {
  return CREDENTIAL_NAME.test(name.toLowerCase().replaceAll('_', '-'))
}

/** Placeholders (`<issued by the proxy…>`), redaction markers and fingerprints hide nothing. */
const NOT_A_SECRET = /^(?:<[^<>]*>|sha256:[0-9a-f]{8})$/

function isSecretValue(value: unknown): value is string {
  return typeof value === 'string' && value !== '' && !NOT_A_SECRET.test(value)
}

/** Credentials replaced in one object, value → marker: how an embedded document's text is redacted. */
type Replaced = Map<string, string>

function hide(secret: string, replaced: Replaced): string {
  const marker = secretMarker(secret)
  replaced.set(secret, marker)
  return marker
}

const CLUSTER_CONNECTION_CONFIG_TYPE = 'config.kubesphere.io/cluster-connection-config'

type Fields = Record<string, unknown>

/**
 * What the schema of each resource says about its credentials, beyond the names that are credentials
 * everywhere. `original` is the object as read; `copy` the redacted copy, whose fields a rule replaces.
 */
const resourceRules = new Map<string, (original: Fields, copy: Fields, replaced: Replaced) => void>(
  Object.entries({
    // Every value of a Secret is a credential, except the settings document of KubeSphere's cluster
    // connection Secret (proxyPublishAddress, agentImage…), whose diff a user needs to read.
    secrets(original, copy, replaced) {
      for (const field of ['data', 'stringData']) {
        const values = original[field]
        if (!isFields(values)) continue
        copy[field] = Object.fromEntries(
          Object.entries(values).map(([key, value]) => {
            if (!isSecretValue(value)) return [key, value]
            const settings = original.type === CLUSTER_CONNECTION_CONFIG_TYPE && key === 'configuration.yaml'
            return [key, settings ? redactDocument(value) : hide(value, replaced)]
          }),
        )
      }
    },
    // ConfigMap values are often configuration files (kubesphere.yaml holds the jwtSecret): each one that is
    // a YAML or JSON document is shown with its credentials redacted, the rest of its text as it is.
    configmaps(original, copy) {
      const values = original.data
      if (!isFields(values)) return
      copy.data = Object.fromEntries(
        Object.entries(values).map(([key, value]) => [
          key,
          typeof value === 'string' ? redactDocument(value) : value,
        ]),
      )
    },
    // spec.connection.kubeconfig: a base64 kubeconfig with the member's client key (direct clusters, and
    // what tower issues for proxy ones); spec.config (4.x): base64 Helm values with the jwtSecret.
    'clusters.cluster.kubesphere.io'(original, copy, replaced) {
      const spec = original.spec
      if (!isFields(spec)) return
      const copySpec = {...(copy.spec as Fields)}
      if (isSecretValue(spec.config)) copySpec.config = hide(spec.config, replaced)
      const connection = spec.connection
      if (isFields(connection) && isSecretValue(connection.kubeconfig)) {
        copySpec.connection = {
          ...(copySpec.connection as Fields),
          kubeconfig: hide(connection.kubeconfig, replaced),
        }
      }
      copy.spec = copySpec
    },
  }),
)

const resourcesByKind = new Map([
  ['v1/Secret', 'secrets'],
  ['v1/ConfigMap', 'configmaps'],
  ['cluster.kubesphere.io/Cluster', 'clusters.cluster.kubesphere.io'],
])

function resourceOf(object: Fields): string | undefined {
  if (typeof object.apiVersion !== 'string' || typeof object.kind !== 'string') return undefined
  const group = object.apiVersion.includes('/') ? object.apiVersion.split('/')[0] : object.apiVersion
  return resourcesByKind.get(`${group}/${object.kind}`)
}

/**
 * A copy of `value` in which every credential is replaced by its fingerprint (`<redacted sha256:…>`), so
 * that a changed credential still shows as changed: the one object redactor of everything ksctl prints,
 * diffs or returns as JSON. It knows where credentials live from the schema of what it walks: API objects
 * by kind (Secret data, a Cluster's kubeconfig and token, kubesphere.yaml inside its ConfigMap), names that
 * hold credentials anywhere (tokens, passwords, jwtSecret, kubeconfig keys), container arguments and
 * environment variables; other text is redacted as `redact` does. `resource` names the kind of an object
 * that does not say it itself (`secrets` for a decoded Secret). Values marked with `revealed` pass as they are.
 */
export function redactObject(value: unknown, resource?: string): unknown {
  return redactValue(value, resource, new Map())
}

function redactValue(value: unknown, resource: string | undefined, replaced: Replaced): unknown {
  if (typeof value === 'string') return redact(value)
  if (typeof value !== 'object' || value === null || revealedValues.has(value)) return value
  if (Array.isArray(value)) return value.map((item) => redactValue(item, undefined, replaced))
  const original = value as Fields
  const copy: Fields = {}
  for (const [key, item] of Object.entries(original)) {
    if (isCredentialName(key) && isSecretValue(item)) copy[key] = hide(item, replaced)
    else if ((key === 'command' || key === 'args') && isStrings(item))
      copy[key] = redactArguments(item, replaced)
    else copy[key] = redactValue(item, undefined, replaced)
  }
  // {name, value}: an environment variable, or one of a kubeconfig's exec plugin.
  if (typeof original.name === 'string' && isCredentialName(original.name) && isSecretValue(original.value)) {
    copy.value = hide(original.value, replaced)
  }
  resourceRules.get(resource ?? resourceOf(original) ?? '')?.(original, copy, replaced)
  return copy
}

/** `--token=X`, `--token X`: the value of a credential flag, in a container's command or args. */
function redactArguments(argv: string[], replaced: Replaced): string[] {
  const credentialFlag = (arg: string | undefined) =>
    arg !== undefined && /^--?[\w-]+$/.test(arg) && isCredentialName(arg.replace(/^-+/, ''))
  return argv.map((arg, index) => {
    const assignment = /^(--?[\w-]+)=(.*)$/s.exec(arg)
    if (assignment !== null && credentialFlag(assignment[1]) && isSecretValue(assignment[2])) {
      return `${assignment[1]}=${hide(assignment[2], replaced)}`
    }
    if (credentialFlag(argv[index - 1]) && isSecretValue(arg) && !arg.startsWith('-'))
      return hide(arg, replaced)
    return redact(arg)
  })
}

/**
 * A document embedded as text (a ConfigMap's kubesphere.yaml): its credentials are found by parsing it and
 * replaced in the text, so that comments, order and quoting stay as they are. Should a credential survive
 * that (written escaped, or across lines), the redacted document is dumped anew instead.
 */
function redactDocument(text: string): string {
  let parsed: unknown
  try {
    parsed = load(text)
  } catch {
    return redact(text)
  }
  if (typeof parsed !== 'object' || parsed === null) return redact(text)
  const replaced: Replaced = new Map()
  const redacted = redactValue(parsed, undefined, replaced)
  let result = text
  for (const [secret, marker] of [...replaced].sort((a, b) => b[0].length - a[0].length)) {
    result = result.split(secret).join(marker)
  }
  result = redact(result)
  return survivesIn(result) ? redact(dump(redacted, {lineWidth: -1, noRefs: true})) : result
}

/** Whether a credential is still in the text of a document after its redaction. */
function survivesIn(text: string): boolean {
  try {
    const left: Replaced = new Map()
    redactValue(load(text), undefined, left)
    return left.size > 0
  } catch {
    return true
  }
}

function isFields(value: unknown): value is Fields {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function isStrings(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((item) => typeof item === 'string')
}

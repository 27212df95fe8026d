import {readFileSync} from 'node:fs'
import {resolve} from 'node:path'

import {invalidInput} from '../errors.js'
import {kubectl} from '../k8s/kubectl.js'
import {quantityValue} from '../quantity.js'
import {redactor} from '../redact.js'
import {DEFAULT_AGENT_IMAGES, defaultKsctlAgentImage, type AgentResources} from './agent-manifest.js'
import {parseRuntime, type TunnelRuntime} from './agent-runtime.js'
import {
  isCertificatePem,
  type AgentSettings,
  type AgentSettingsOverrides,
  type ProxyTrustOverrides,
} from './agent-settings.js'
import type {Edition} from './detect.js'
import {isProxyClusterName, MAX_PROXY_CLUSTER_NAME_LENGTH} from './names.js'
import {parseProxyAddress} from './proxy-address.js'

/** The flags of `ksctl agent render` as given: text, which this module validates. */
export interface AgentRenderFlags {
  context?: string | undefined
  token?: string | undefined
  'proxy-address'?: string | undefined
  edition?: string | undefined
  image?: string | undefined
  replicas?: string | undefined
  'http-proxy'?: string | undefined
  'cpu-request'?: string | undefined
  'cpu-limit'?: string | undefined
  'memory-request'?: string | undefined
  'memory-limit'?: string | undefined
  output?: string | undefined
  runtime?: string | undefined
  'proxy-ca'?: string | undefined
  'proxy-pin'?: string | undefined
}

/** A validated `ksctl agent render`. */
export interface AgentRenderRequest {
  clusterName: string
  /** The offline form (`--token`): every setting came from flags, and no cluster is read. */
  offline?: AgentSettings
  /** For the form that reads the host: what the flags replace. */
  overrides: AgentSettingsOverrides
  replicas: number
  httpProxy?: string
  resources: AgentResources
  /** `--output`, as an absolute path. */
  outputFile?: string
  /** `--runtime`; when absent, the host's runtime (or Tower's, rendering from a token). */
  runtime?: TunnelRuntime
  /** `--proxy-pin`, or the certificates of `--proxy-ca`: how ksctl's agent trusts ksctl's proxy. */
  trust: ProxyTrustOverrides
  warnings: string[]
}

/** What the tower proxy generates: 32 random bytes, hex-encoded. */
const towerTokenPattern = /^[0-9a-f]{64}$/

const exampleAddress = 'http://192.0.2.10:30721'

/** Checks every argument and flag before anything is read, so bad input never reaches a cluster. */
export function parseAgentRenderRequest(name: string, flags: AgentRenderFlags): AgentRenderRequest {
  const clusterName = checkClusterName(name)
  const proxyAddress = optional(flags['proxy-address'], checkProxyAddress)
  const image = optional(flags.image, checkImage)
  const runtime = parseRuntime(flags.runtime)
  const trust = checkTrust(flags['proxy-pin'], flags['proxy-ca'], runtime)
  const warnings: string[] = []
  let offline: AgentSettings | undefined
  if (flags.token === undefined) {
    if (flags.edition !== undefined) {
      throw invalidInput('--edition is only for rendering from a token (--token), without a cluster', [
        'leave out --edition when reading the host: ksctl detects the edition',
        `to render without a cluster, give the token (--token), e.g. --proxy-address ${exampleAddress} and --edition 4`,
      ])
    }
  } else {
    const token = checkToken(flags.token, warnings)
    if (flags.context !== undefined) {
      throw invalidInput('--context cannot be used with --token, which renders without reading any cluster', [
        'to read the token from the host, leave out --token; to render without a cluster, leave out --context',
      ])
    }
    if (proxyAddress === undefined) {
      throw invalidInput('rendering from a token (--token) reads no cluster, so it needs --proxy-address', [
        `e.g. --proxy-address ${exampleAddress} (the address members reach the host's tower proxy at)`,
      ])
    }
    const edition = checkEdition(flags.edition ?? '4')
    const trustFlag = trustFlagOf(trust)
    if (runtime === undefined && trustFlag !== undefined) {
      throw invalidInput(
        `${trustFlag} is for ksctl's agent, and rendering from a token (--token) without --runtime renders Tower's`,
        ['add --runtime ksctl'],
      )
    }
    if (runtime === 'ksctl' && trustFlag === undefined) {
      throw invalidInput(
        "rendering ksctl's agent from a token (--token) reads no cluster, so it needs how the agent trusts " +
          "ksctl's proxy: --proxy-ca or --proxy-pin",
        [
          `e.g. --proxy-ca ca.crt, with: ${kubectl('<host-context>', "-n kubesphere-system get secret ksctl-tower-ca -o jsonpath='{.data.tls\\.crt}'")} | base64 -d > ca.crt`,
        ],
      )
    }
    offline = {
      edition,
      clusterName,
      token,
      proxyAddress,
      proxyAddressSource: '--proxy-address',
      image: image ?? (runtime === 'ksctl' ? defaultKsctlAgentImage() : DEFAULT_AGENT_IMAGES[edition]),
      warnings: [],
    }
  }
  const httpProxy = optional(flags['http-proxy'], checkHttpProxy)
  const outputFile = optional(flags.output, checkOutput)
  return {
    clusterName,
    ...(offline === undefined ? {} : {offline}),
    overrides: {proxyAddress, image},
    replicas: flags.replicas === undefined ? 1 : checkReplicas(flags.replicas),
    ...(httpProxy === undefined ? {} : {httpProxy}),
    resources: {
      cpuRequest: optional(flags['cpu-request'], (value) => checkQuantity(value, '--cpu-request', '250m')),
      cpuLimit: optional(flags['cpu-limit'], (value) => checkQuantity(value, '--cpu-limit', '2')),
      memoryRequest: optional(flags['memory-request'], (value) =>
        checkQuantity(value, '--memory-request', '128Mi'),
      ),
      memoryLimit: optional(flags['memory-limit'], (value) =>
        checkQuantity(value, '--memory-limit', '512Mi'),
      ),
    },
    ...(outputFile === undefined ? {} : {outputFile}),
    ...(runtime === undefined ? {} : {runtime}),
    trust,
    warnings,
  }
}

/** `--proxy-pin` or `--proxy-ca` (read here, so that a bad file fails before any cluster is read), never both. */
function checkTrust(
  pin: string | undefined,
  caFile: string | undefined,
  runtime: TunnelRuntime | undefined,
): ProxyTrustOverrides {
  if (pin === undefined && caFile === undefined) return {}
  const flag = pin === undefined ? '--proxy-ca' : '--proxy-pin'
  if (pin !== undefined && caFile !== undefined) {
    throw invalidInput('give one of --proxy-ca and --proxy-pin: the agent trusts the proxy by one of them', [
      '--proxy-pin survives a CA rotation; --proxy-ca survives a new serving key',
    ])
  }
  if (runtime === 'tower') {
    throw invalidInput(`${flag} is for ksctl's agent: Tower's agent dials the proxy without TLS`, [
      `leave out ${flag}, or --runtime ksctl for ksctl's agent`,
    ])
  }
  if (pin !== undefined) return {pin: checkPin(pin, '--proxy-pin')}
  return {caPem: readCertificates(caFile ?? '')}
}

/** The flag the user told ksctl's agent how to trust the proxy with, if any. */
export function trustFlagOf(trust: ProxyTrustOverrides): '--proxy-pin' | '--proxy-ca' | undefined {
  if (trust.pin !== undefined) return '--proxy-pin'
  return trust.caPem === undefined ? undefined : '--proxy-ca'
}

/** `sha256:` and 64 lowercase hex digits: what `ksctl tower agent --proxy-pin` takes. */
export function checkPin(value: string, flag: string): string {
  if (/^sha256:[0-9a-f]{64}$/.test(value)) return value
  throw invalidInput(`${flag} ${JSON.stringify(value)} must be sha256: and 64 lowercase hex digits`, [
    "the pin of ksctl's proxy serving key, which the proxy logs as servingPin at start",
  ])
}

function readCertificates(file: string): string {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (error) {
    throw invalidInput(
      `--proxy-ca ${file} cannot be read: ${error instanceof Error ? error.message : String(error)}`,
      ['give the PEM file of the proxy CA (tls.crt of secret kubesphere-system/ksctl-tower-ca)'],
    )
  }
  if (/PRIVATE KEY-----/.test(text)) {
    throw invalidInput(
      `--proxy-ca ${file} holds a private key: the agent needs only the CA's certificate, and a key must not ` +
        'leave the host',
      ['give tls.crt of secret kubesphere-system/ksctl-tower-ca, never tls.key'],
    )
  }
  if (!isCertificatePem(text)) {
    throw invalidInput(`--proxy-ca ${file} is not a PEM certificate`, [
      'give the PEM file of the proxy CA (tls.crt of secret kubesphere-system/ksctl-tower-ca)',
    ])
  }
  return text
}

function optional<T>(value: string | undefined, check: (value: string) => T): T | undefined {
  return value === undefined ? undefined : check(value)
}

function checkClusterName(name: string): string {
  if (isProxyClusterName(name)) return name
  throw invalidInput(
    `invalid cluster name ${JSON.stringify(name)} (NAME): use lowercase letters, digits and '-', starting and ` +
      `ending with a letter or digit, at most ${MAX_PROXY_CLUSTER_NAME_LENGTH} characters (the tower proxy creates ` +
      'Service mc-NAME for it)',
    ['e.g. ksctl agent render member1'],
  )
}

function checkProxyAddress(value: string): string {
  parseProxyAddress(value, '--proxy-address')
  return value.replace(/\/$/, '')
}

function checkToken(value: string, warnings: string[]): string {
  if (value === '' || /\s/.test(value)) {
    throw invalidInput(`the token (--token) ${value === '' ? 'is empty' : 'contains whitespace'}`, [
      `copy it from the host: ${kubectl('<host-context>', "get clusters.cluster.kubesphere.io NAME -o jsonpath='{.spec.connection.token}'")}`,
    ])
  }
  redactor.register(value)
  if (!towerTokenPattern.test(value)) {
    // Never "--token is …": the redactor takes the word after "--token " for a token.
    warnings.push(
      'the token (--token) is not 64 lowercase hex digits, the form tower generates; using it as given',
    )
  }
  return value
}

function checkEdition(value: string): Edition {
  if (value === '3' || value === '3.x') return '3.x'
  if (value === '4' || value === '4.x') return '4.x'
  throw invalidInput(
    `--edition ${JSON.stringify(value)} must be 3 or 4 (the KubeSphere release line of the host)`,
    ['e.g. --edition 4'],
  )
}

function checkReplicas(value: string): number {
  const replicas = /^\d+$/.test(value) ? Number(value) : NaN
  if (Number.isSafeInteger(replicas) && replicas >= 1) return replicas
  throw invalidInput(`--replicas ${JSON.stringify(value)} must be a whole number, at least 1`, [
    'e.g. --replicas 2 (agents spread across nodes, with a PodDisruptionBudget)',
  ])
}

function checkImage(value: string): string {
  if (value !== '' && !/\s/.test(value)) return value
  throw invalidInput(`--image ${JSON.stringify(value)} is not an image reference`, [
    'e.g. --image registry.example.com/kubesphere/tower:v0.2.1',
  ])
}

function checkHttpProxy(value: string): string {
  const url = URL.parse(value)
  if (url === null || !isProxyUrl(url)) {
    throw invalidInput(`--http-proxy ${JSON.stringify(value)} is not an http(s):// proxy URL`, [
      'e.g. --http-proxy http://proxy.example.com:3128',
    ])
  }
  // Proxy credentials go into the manifest, which is the result; they must not reach logs or errors.
  redactor.register(url.password)
  redactor.register(decodeURIComponent(url.password))
  return value
}

function isProxyUrl(url: URL): boolean {
  return (
    (url.protocol === 'http:' || url.protocol === 'https:') &&
    url.hostname !== '' &&
    ['', '/'].includes(url.pathname) &&
    url.search === '' &&
    url.hash === ''
  )
}

function checkQuantity(value: string, flag: string, example: string): string {
  if (quantityValue(value) !== undefined) return value
  throw invalidInput(`${flag} ${JSON.stringify(value)} is not a Kubernetes quantity`, [
    `e.g. ${flag} ${example}`,
  ])
}

function checkOutput(value: string): string {
  if (value !== '') return resolve(value)
  throw invalidInput('--output is empty', ['e.g. --output member1-agent.yaml'])
}

import {readFileSync} from 'node:fs'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'

import type {AgentManifestOptions, KsctlAgentManifestOptions} from '../../src/kubesphere/agent-manifest.js'
import {AGENT_TOKEN} from '../fixtures/kubesphere/agent-cluster.js'

export const goldenDir = join(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  'fixtures',
  'golden',
  'agent-render',
)

/** The tower LoadBalancer address of the fake 3.4 host: the default golden files are what it serves. */
const defaults = {clusterName: 'member1', token: AGENT_TOKEN, proxyAddress: 'http://192.0.2.10:8080'}

const everyOption = {
  clusterName: 'member1',
  token: AGENT_TOKEN,
  proxyAddress: 'https://tower.example.com:443',
  image: 'registry.example.com/kubesphere/tower:v0.2.1',
  replicas: 3,
  httpProxy: 'http://proxy.example.com:3128',
  resources: {cpuRequest: '200m', cpuLimit: '2', memoryRequest: '128Mi', memoryLimit: '512Mi'},
}

/** The inputs of the golden files, by file name. */
export const goldenCases: Record<string, AgentManifestOptions> = {
  'v3-default': {edition: '3.x', ...defaults},
  'v4-default': {edition: '4.x', ...defaults},
  'v3-replicas-http-proxy-image-resources': {edition: '3.x', ...everyOption},
  'v4-replicas-http-proxy-image-resources': {edition: '4.x', ...everyOption},
}

export function golden(name: string): string {
  return readFileSync(join(goldenDir, `${name}.yaml`), 'utf8')
}

/** A CA certificate as PEM text: the renderer copies it into a ConfigMap without reading it. */
export const GOLDEN_PROXY_CA = '-----BEGIN CERTIFICATE-----\nMIIBgolden\n-----END CERTIFICATE-----\n'

/** ksctl's agent manifest: the inputs of its golden files, by file name. */
export const ksctlGoldenCases: Record<string, KsctlAgentManifestOptions> = {
  'ksctl-ca': {
    clusterName: 'member1',
    token: AGENT_TOKEN,
    proxyAddress: 'wss://192.0.2.10:30721',
    trust: {caPem: GOLDEN_PROXY_CA},
    image: 'ksctl:0.1.0',
  },
  'ksctl-pin-replicas-http-proxy-image-resources': {
    clusterName: 'member1',
    token: AGENT_TOKEN,
    proxyAddress: 'wss://tower.example.com:443',
    trust: {pin: `sha256:${'ab'.repeat(32)}`},
    image: 'registry.example.com/ksctl:0.1.0',
    replicas: 3,
    httpProxy: 'http://proxy.example.com:3128',
    resources: {cpuRequest: '200m', cpuLimit: '2', memoryRequest: '256Mi', memoryLimit: '1Gi'},
  },
}

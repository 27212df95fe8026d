import assert from 'node:assert/strict'
import {writeFileSync} from 'node:fs'

import Info from '../../../commands/info.js'
import type {ErrorJson} from '../../../src/cli/base-command.js'
import {fingerprint} from '../../../src/redact.js'
import type {KubeSphereInfo} from '../../../src/kubesphere/detect.js'
import {LOAD_BALANCER_IP, TOWER_NODE_PORT, secrets} from '../../../src/kubesphere-standin/fixtures.js'
import {kubeconfigYaml, seedFake, startFakeClusters, type FakeClusters} from '../../helpers/fake-clusters.js'
import {runCommand} from '../../helpers/run-command.js'

describe('ksctl info', () => {
  let clusters: FakeClusters

  beforeEach(async () => {
    clusters = await startFakeClusters()
  })

  afterEach(async () => {
    await clusters.stop()
  })

  const info = (...argv: string[]) =>
    runCommand<KubeSphereInfo>(Info, ['--kubeconfig', clusters.kubeconfigPath, ...argv])

  it('reports a 3.4 host with a LoadBalancer tower as its proxy address', async () => {
    seedFake(clusters.host, 'ks34-host')
    const {stdout, exitCode, result} = await info('--context', 'host')
    assert.equal(exitCode, 0)
    assert.deepEqual(result, {
      context: 'host',
      server: clusters.host.url,
      kubernetesVersion: 'v1.35.4',
      installed: true,
      edition: '3.x',
      version: 'v3.4.1',
      role: 'host',
      hostClusterName: 'host',
      multiclusterStatus: 'enabled',
      tower: {
        exists: true,
        type: 'LoadBalancer',
        port: 8080,
        nodePort: TOWER_NODE_PORT,
        loadBalancerIngress: LOAD_BALANCER_IP,
        loadBalancerAddress: `http://${LOAD_BALANCER_IP}:8080`,
      },
      proxyAddress: {effective: `http://${LOAD_BALANCER_IP}:8080`, source: 'load-balancer'},
      jwtSecretFingerprint: fingerprint(secrets.hostJwtSecret),
    })
    assert.match(stdout, /^KubeSphere: +v3\.4\.1 \(3\.x, ks-installer\)$/m)
    assert.match(
      stdout,
      new RegExp(
        `^Proxy address: +http://${LOAD_BALANCER_IP.replaceAll('.', '\\.')}:8080 \\(tower LoadBalancer\\)$`,
        'm',
      ),
    )
    assert.ok(!stdout.includes(secrets.hostJwtSecret))
  })

  it('prefers a configured proxyPublishAddress over the LoadBalancer, and says where it is configured', async () => {
    seedFake(clusters.host, 'ks34-host', {proxyPublishAddress: 'http://203.0.113.5:30721'})
    const {result} = await info('--context', 'host')
    assert.deepEqual(result?.proxyAddress, {
      configured: 'http://203.0.113.5:30721',
      configuredIn: 'ClusterConfiguration ks-installer',
      effective: 'http://203.0.113.5:30721',
      source: 'configured',
    })
  })

  it('reports a pending LoadBalancer as having no proxy address', async () => {
    seedFake(clusters.host, 'ks34-host', {tower: 'load-balancer-pending'})
    const {stdout, result} = await info('--context', 'host')
    assert.deepEqual(result?.proxyAddress, {})
    assert.match(stdout, /no ingress \(pending\)/)
    assert.match(stdout, /^Proxy address: +not set/m)
  })

  it('reports a 3.4 member with the name its host gave it, on the member context only', async () => {
    seedFake(clusters.member, 'ks34-member')
    const {result} = await info('--context', 'member')
    assert.equal(result?.role, 'member')
    assert.equal(result.memberClusterName, 'member1')
    assert.equal(result.tower.exists, false)
    assert.equal(clusters.host.requests.length, 0)
  })

  it('reports a 4.1 host from kubesphere-config and the ks-core version, with a NodePort tower', async () => {
    seedFake(clusters.host, 'ks41-host')
    const {result} = await info('--context', 'host', '--json')
    assert.equal(result?.edition, '4.x')
    assert.equal(result.version, 'v4.1.3')
    assert.equal(result.role, 'host')
    assert.equal(result.tower.type, 'NodePort')
    assert.deepEqual(result.proxyAddress, {})
    assert.equal(result.jwtSecretFingerprint, fingerprint(secrets.ks41JwtSecret))
  })

  it('reads a 4.x proxy address from the tower connection Secret before the ConfigMap', async () => {
    seedFake(clusters.host, 'ks41-host', {proxyPublishAddress: 'http://198.51.100.1:30721'})
    clusters.host.put('/api/v1/namespaces/kubesphere-system/secrets/tower', {
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'config.kubesphere.io/cluster-connection-config',
      metadata: {name: 'tower', namespace: 'kubesphere-system'},
      data: {
        'configuration.yaml': Buffer.from('proxyPublishAddress: http://198.51.100.2:30721\n').toString(
          'base64',
        ),
      },
    })
    const {result} = await info('--context', 'host')
    assert.equal(result?.proxyAddress.effective, 'http://198.51.100.2:30721')
    assert.equal(result.proxyAddress.configuredIn, 'secret tower')
  })

  it('says KubeSphere is not installed on a plain cluster, and exits 0', async () => {
    seedFake(clusters.host, 'plain')
    const {stdout, exitCode, result} = await info()
    assert.equal(exitCode, 0)
    assert.equal(result?.installed, false)
    assert.match(stdout, /^KubeSphere: +not installed$/m)
  })

  it('prints YAML with -o yaml', async () => {
    seedFake(clusters.host, 'plain')
    const {stdout} = await info('-o', 'yaml')
    assert.match(stdout, /^installed: false$/m)
  })

  it('fails with a usage error naming the available contexts for an unknown context', async () => {
    const {stderr, exitCode} = await info('--context', 'nope')
    assert.equal(exitCode, 2)
    assert.match(stderr, /context "nope" not found in kubeconfig /)
    assert.match(stderr, /available contexts: host, member/)
  })

  it('maps a forbidden read to an error naming the verb, the object and the context, as JSON with --json', async () => {
    seedFake(clusters.host, 'ks34-host')
    clusters.host.failNext(
      'GET',
      /clusterconfigurations\/ks-installer$/,
      403,
      'clusterconfigurations is forbidden: User "limited" cannot get resource',
    )
    const {stdout, exitCode} = await info('--context', 'host', '--json')
    assert.equal(exitCode, 1)
    const {error} = JSON.parse(stdout) as ErrorJson
    assert.equal(error.code, 'FORBIDDEN')
    assert.equal(error.context, 'host')
    assert.deepEqual(error.object, {
      resource: 'clusterconfigurations.installer.kubesphere.io',
      name: 'ks-installer',
      namespace: 'kubesphere-system',
    })
    assert.match(
      error.message,
      /^forbidden: cannot get clusterconfigurations\.installer\.kubesphere\.io kubesphere-system\/ks-installer in context "host": .*User "limited"/,
    )
  })

  it('fails with exit 1 and the server named when the API server is unreachable', async () => {
    const url = clusters.member.url
    await clusters.member.stop()
    const {stderr, exitCode} = await info('--context', 'member')
    assert.equal(exitCode, 1)
    assert.match(
      stderr,
      new RegExp(`cannot reach the API server of context "member" at ${url} \\(ECONNREFUSED\\)`),
    )
  })

  it('fails with a TLS error when the server certificate is not signed by the kubeconfig CA', async () => {
    const otherCa = (await import('../../helpers/test-pki.js')).loopbackPki('other')
    writeFileSync(
      clusters.kubeconfigPath,
      kubeconfigYaml({host: [clusters.host.url, 'host-bearer-token-0123456789']}, (await otherCa).ca.certPem),
    )
    const {stderr, exitCode} = await info()
    assert.equal(exitCode, 1)
    assert.match(stderr, /TLS verification failed for the API server of context "host"/)
  })
})

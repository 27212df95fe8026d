import assert from 'node:assert/strict'
import {readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {dump, load} from 'js-yaml'

import type {KubeSphereInfo} from '../../src/kubesphere/detect.js'
import {fingerprint} from '../../src/redact.js'
import {LOAD_BALANCER_IP, TOWER_NODE_PORT, secrets} from '../../src/kubesphere-standin/fixtures.js'
import {ksctl} from '../helpers/ksctl-process.js'
import {tempDir} from '../helpers/temp-dir.js'
import {loopbackPki} from '../helpers/test-pki.js'
import {freePort} from '../testbed/http.js'
import {resetCluster} from '../testbed/seed.js'
import {testBed} from './hooks.js'

interface KubeconfigDocument {
  clusters: {name: string; cluster: Record<string, unknown>}[]
}

describe('ksctl info against the real apiservers', function () {
  this.timeout(120_000)
  let scratch: string

  before(() => {
    scratch = tempDir('ksctl-info-')
  })

  async function info(context: string): Promise<{info: KubeSphereInfo; stdout: string}> {
    const outcome = await ksctl([
      'info',
      '--kubeconfig',
      testBed().kubeconfigPath,
      '--context',
      context,
      '--json',
    ])
    assert.equal(outcome.exitCode, 0, outcome.stderr)
    return {info: JSON.parse(outcome.stdout) as KubeSphereInfo, stdout: outcome.stdout}
  }

  /** A copy of the test bed's kubeconfig with one cluster entry changed. */
  function kubeconfigWith(change: (cluster: Record<string, unknown>) => void): string {
    const document = load(readFileSync(testBed().kubeconfigPath, 'utf8')) as KubeconfigDocument
    for (const entry of document.clusters) change(entry.cluster)
    const path = join(scratch, `kubeconfig-${String(Date.now())}`)
    writeFileSync(path, dump(document))
    return path
  }

  it('detects a 3.4 host with its LoadBalancer proxy address', async () => {
    await resetCluster(testBed().kubeconfigPath, 'host', 'ks34-host')
    const {info: detected, stdout} = await info('host')
    assert.deepEqual(detected, {
      context: 'host',
      server: testBed().clusters.host.url,
      kubernetesVersion: testBed().versions.kubeApiserver,
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
    assert.ok(!stdout.includes(secrets.hostJwtSecret))
  })

  it('detects a 3.4 member and the name its host gave it', async () => {
    await resetCluster(testBed().kubeconfigPath, 'member', 'ks34-member')
    const {info: detected} = await info('member')
    assert.deepEqual(
      {
        edition: detected.edition,
        version: detected.version,
        role: detected.role,
        memberClusterName: detected.memberClusterName,
        tower: detected.tower,
        proxyAddress: detected.proxyAddress,
        jwtSecretFingerprint: detected.jwtSecretFingerprint,
      },
      {
        edition: '3.x',
        version: 'v3.4.1',
        role: 'member',
        memberClusterName: 'member1',
        tower: {exists: false},
        proxyAddress: {},
        jwtSecretFingerprint: fingerprint(secrets.memberJwtSecret),
      },
    )
  })

  it('detects a 4.1 host with a NodePort tower and no proxy address yet', async () => {
    await resetCluster(testBed().kubeconfigPath, 'host', 'ks41-host')
    const {info: detected} = await info('host')
    assert.deepEqual(
      {
        edition: detected.edition,
        version: detected.version,
        role: detected.role,
        hostClusterName: detected.hostClusterName,
        tower: detected.tower,
        proxyAddress: detected.proxyAddress,
        jwtSecretFingerprint: detected.jwtSecretFingerprint,
      },
      {
        edition: '4.x',
        version: 'v4.1.3',
        role: 'host',
        hostClusterName: 'host',
        tower: {exists: true, type: 'NodePort', port: 8080, nodePort: TOWER_NODE_PORT},
        proxyAddress: {},
        jwtSecretFingerprint: fingerprint(secrets.ks41JwtSecret),
      },
    )
  })

  it('says KubeSphere is not installed on a plain cluster, with exit 0', async () => {
    await resetCluster(testBed().kubeconfigPath, 'member', 'plain')
    const outcome = await ksctl(['info', '--kubeconfig', testBed().kubeconfigPath, '--context', 'member'])
    assert.equal(outcome.exitCode, 0)
    assert.match(outcome.stdout, /^KubeSphere: +not installed$/m)
    assert.match(
      outcome.stdout,
      new RegExp(`^Kubernetes: +${testBed().versions.kubeApiserver.replaceAll('.', '\\.')}$`, 'm'),
    )
  })

  it('fails with exit 2 on an unknown context, listing the contexts there are', async () => {
    const outcome = await ksctl(['info', '--kubeconfig', testBed().kubeconfigPath, '--context', 'staging'])
    assert.equal(outcome.exitCode, 2)
    assert.equal(outcome.stdout, '')
    assert.match(outcome.stderr, /^error: context "staging" not found in kubeconfig .*kubeconfig$/m)
    assert.match(outcome.stderr, /available contexts: host, member, host-limited, member-limited/)
  })

  it('fails with exit 1 when the server is unreachable, naming the context and the address', async () => {
    const closedPort = await freePort()
    const kubeconfig = kubeconfigWith((cluster) => {
      cluster.server = `https://127.0.0.1:${closedPort}`
    })
    const outcome = await ksctl(['info', '--kubeconfig', kubeconfig, '--context', 'host'])
    assert.equal(outcome.exitCode, 1)
    assert.match(
      outcome.stderr,
      new RegExp(
        `^error: cannot reach the API server of context "host" at https://127\\.0\\.0\\.1:${closedPort} \\(ECONNREFUSED\\)$`,
        'm',
      ),
    )
  })

  it('fails with exit 1 when the server certificate is not signed by the kubeconfig CA', async () => {
    const otherCa = (await loopbackPki('unrelated')).ca.certPem
    const kubeconfig = kubeconfigWith((cluster) => {
      cluster['certificate-authority-data'] = Buffer.from(otherCa).toString('base64')
    })
    const outcome = await ksctl(['info', '--kubeconfig', kubeconfig, '--context', 'host', '--json'])
    assert.equal(outcome.exitCode, 1)
    const {error} = JSON.parse(outcome.stdout) as {error: {code: string; message: string; context: string}}
    assert.equal(error.code, 'TLS_VERIFICATION_FAILED')
    assert.equal(error.context, 'host')
    assert.match(
      error.message,
      /^TLS verification failed for the API server of context "host" at https:\/\/127\.0\.0\.1:\d+/,
    )
  })

  it('fails with exit 1 for the RBAC-limited user, naming the verb, the object and what the API server said', async () => {
    await resetCluster(testBed().kubeconfigPath, 'host', 'ks34-host')
    const outcome = await ksctl([
      'info',
      '--kubeconfig',
      testBed().kubeconfigPath,
      '--context',
      'host-limited',
    ])
    assert.equal(outcome.exitCode, 1)
    assert.match(
      outcome.stderr,
      /^error: forbidden: cannot get clusterconfigurations\.installer\.kubesphere\.io kubesphere-system\/ks-installer in context "host-limited": clusterconfigurations\.installer\.kubesphere\.io "ks-installer" is forbidden: User "ksctl-limited" cannot get resource "clusterconfigurations" in API group "installer\.kubesphere\.io" in the namespace "kubesphere-system"$/m,
    )
    assert.match(
      outcome.stderr,
      /kubectl --context host-limited auth can-i get clusterconfigurations\.installer\.kubesphere\.io -n kubesphere-system/,
    )
  })
})

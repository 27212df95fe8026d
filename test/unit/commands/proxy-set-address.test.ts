import assert from 'node:assert/strict'

import {load} from 'js-yaml'

import ProxySetAddress from '../../../commands/proxy/set-address.js'
import type {SetProxyAddressResult} from '../../../src/kubesphere/proxy-address.js'
import {LOAD_BALANCER_IP, TOWER_NODE_PORT} from '../../../src/kubesphere-standin/fixtures.js'
import {seedFake, startFakeClusters, type FakeClusters} from '../../helpers/fake-clusters.js'
import {runCommand} from '../../helpers/run-command.js'

const installerPath =
  '/apis/installer.kubesphere.io/v1alpha1/namespaces/kubesphere-system/clusterconfigurations/ks-installer'
const configPath = '/api/v1/namespaces/kubesphere-system/configmaps/kubesphere-config'
const secretPath = '/api/v1/namespaces/kubesphere-system/secrets/tower'
const apiServerPath = '/apis/apps/v1/namespaces/kubesphere-system/deployments/ks-apiserver'

describe('ksctl proxy set-address', () => {
  let clusters: FakeClusters

  beforeEach(async () => {
    clusters = await startFakeClusters()
  })

  afterEach(async () => {
    await clusters.stop()
  })

  const setAddress = (...argv: string[]) =>
    runCommand<SetProxyAddressResult>(ProxySetAddress, [
      '--kubeconfig',
      clusters.kubeconfigPath,
      '--context',
      'host',
      ...argv,
    ])
  const kubesphereYaml = () =>
    load((clusters.host.get(configPath)?.data as Record<string, string>)['kubesphere.yaml'] ?? '') as Record<
      string,
      Record<string, unknown>
    >

  it('detects a LoadBalancer address and changes nothing', async () => {
    seedFake(clusters.host, 'ks34-host')
    const {stdout, stderr, exitCode, result} = await setAddress()
    assert.equal(exitCode, 0)
    assert.equal(result?.address, `http://${LOAD_BALANCER_IP}:8080`)
    assert.equal(result?.source, 'load-balancer')
    assert.equal(
      stdout,
      `proxy address of context host: http://${LOAD_BALANCER_IP}:8080 (tower LoadBalancer)\n`,
    )
    assert.match(stderr, /^note: detected from the tower LoadBalancer: .*; nothing needs setting$/m)
    assert.deepEqual(clusters.host.writes(), [])
  })

  it('writes an explicit address into the 3.x ClusterConfiguration, even with a LoadBalancer', async () => {
    seedFake(clusters.host, 'ks34-host')
    const before = clusters.host.get(installerPath)?.spec as Record<string, Record<string, unknown>>
    const {exitCode, stdout, stderr} = await setAddress('http://203.0.113.10:8080')
    assert.equal(exitCode, 0, stderr)
    const after = clusters.host.get(installerPath)?.spec as Record<string, Record<string, unknown>>
    assert.deepEqual(after, {
      ...before,
      multicluster: {...before.multicluster, proxyPublishAddress: 'http://203.0.113.10:8080'},
    })
    assert.match(
      stderr,
      /^note: set in the ks-installer ClusterConfiguration: the installer re-renders kubesphere-config from it/m,
    )
    assert.ok(!stdout.includes('note:'), 'notes go to stderr, stdout carries the result')
    assert.equal(clusters.host.get(apiServerPath)?.metadata.resourceVersion !== undefined, true)
    assert.equal(clusters.host.writes().length, 1, 'a 3.4 ks-apiserver watches its configuration: no restart')
  })

  it('on a 4.1 NodePort host writes kubesphere-config, keeps its other keys, and restarts ks-apiserver', async () => {
    seedFake(clusters.host, 'ks41-host')
    const before = kubesphereYaml()
    const address = `http://198.51.100.7:${TOWER_NODE_PORT}`
    const {exitCode, result, stderr} = await setAddress(
      address,
      '--agent-image',
      'registry.local/kubesphere/tower:v0.2.1',
    )
    assert.equal(exitCode, 0, stderr)
    assert.deepEqual(kubesphereYaml(), {
      ...before,
      multicluster: {
        ...before.multicluster,
        proxyPublishAddress: address,
        agentImage: 'registry.local/kubesphere/tower:v0.2.1',
      },
    })
    assert.deepEqual(result?.restarted, ['ks-apiserver'])
    const template = clusters.host.get(apiServerPath)?.spec as {
      template: {metadata: {annotations?: Record<string, string>}}
    }
    assert.match(
      template.template.metadata.annotations?.['kubectl.kubernetes.io/restartedAt'] ?? '',
      /^\d{4}-\d\d-\d\dT/,
    )
    assert.deepEqual(
      stderr.trimEnd().split('\n'),
      [
        'note: kubesphere-config is rendered by the ks-core Helm chart: run this command again after every helm upgrade of ks-core',
      ],
      'a NodePort address warns of nothing',
    )
  })

  it('also updates the 4.x tower connection Secret, keeping its other settings', async () => {
    seedFake(clusters.host, 'ks41-host')
    clusters.host.put(secretPath, {
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'config.kubesphere.io/cluster-connection-config',
      metadata: {name: 'tower', namespace: 'kubesphere-system'},
      data: {
        'configuration.yaml': Buffer.from(
          'proxyPublishService: tower.kubesphere-system.svc\nagentImage: kubesphere/tower:v0.2.1\n',
        ).toString('base64'),
      },
    })
    const {exitCode} = await setAddress('http://198.51.100.7:30721', '--no-restart')
    assert.equal(exitCode, 0)
    const data = clusters.host.get(secretPath)?.data as Record<string, string>
    assert.deepEqual(load(Buffer.from(data['configuration.yaml'] ?? '', 'base64').toString()), {
      proxyPublishService: 'tower.kubesphere-system.svc',
      agentImage: 'kubesphere/tower:v0.2.1',
      proxyPublishAddress: 'http://198.51.100.7:30721',
    })
    assert.equal(clusters.host.writes().length, 2, 'ConfigMap and Secret, no restart')
  })

  it('warns when the port is neither the Service port nor its NodePort', async () => {
    seedFake(clusters.host, 'ks41-host')
    const {stderr, exitCode} = await setAddress('http://198.51.100.7:9999', '--no-restart')
    assert.equal(exitCode, 0)
    assert.match(
      stderr,
      /^note: not restarted \(--no-restart\): run kubectl --context host -n kubesphere-system rollout restart deployment ks-apiserver for it to read the address$/m,
    )
    assert.match(
      stderr,
      /^warn: port 9999 is neither the tower Service port \(8080\) nor its NodePort \(30721\)/m,
    )
  })

  for (const address of [
    'http://127.0.0.1:30721',
    'http://127.3.2.1:30721',
    'http://[::1]:30721',
    'http://localhost:30721',
  ]) {
    it(`sets a loopback address (${address}) with a warning that members cannot reach it`, async () => {
      seedFake(clusters.host, 'ks41-host')
      const {stderr, exitCode, result} = await setAddress(address, '--no-restart')
      assert.equal(exitCode, 0, stderr)
      assert.match(
        stderr,
        /^warn: http:\/\/\S+ is a loopback address: an agent dialing it reaches its own node, not the proxy, so members cannot connect/m,
      )
      assert.equal(result?.warnings.length, 1)
    })
  }

  it('changes nothing when the same address is set again', async () => {
    seedFake(clusters.host, 'ks41-host', {proxyPublishAddress: 'http://198.51.100.7:30721'})
    const {stdout, exitCode} = await setAddress('http://198.51.100.7:30721')
    assert.equal(exitCode, 0)
    assert.match(stdout, /is already http:\/\/198\.51\.100\.7:30721; nothing to change/)
    assert.deepEqual(clusters.host.writes(), [])
  })

  it('prints the diff and what it would restart with --dry-run, changing nothing', async () => {
    seedFake(clusters.host, 'ks41-host')
    const {stdout, exitCode} = await setAddress('http://198.51.100.7:30721', '--dry-run')
    assert.equal(exitCode, 0)
    assert.match(stdout, /^\+\s+proxyPublishAddress: http:\/\/198\.51\.100\.7:30721$/m)
    assert.match(stdout, /would restart deployment kubesphere-system\/ks-apiserver/)
    assert.ok(!stdout.includes('k541JwtS3cret'), 'the jwtSecret in kubesphere.yaml is redacted in the diff')
    assert.deepEqual(clusters.host.writes(), [])
  })

  describe('on a terminal', () => {
    const saved = {stdin: process.stdin.isTTY, stderr: process.stderr.isTTY, ci: process.env.CI}

    beforeEach(() => {
      process.stdin.isTTY = true
      process.stderr.isTTY = true
      delete process.env.CI
    })

    afterEach(() => {
      process.stdin.isTTY = saved.stdin
      process.stderr.isTTY = saved.stderr
      if (saved.ci === undefined) delete process.env.CI
      else process.env.CI = saved.ci
    })

    it('says there are no node addresses to offer when the cluster has no Node objects', async () => {
      seedFake(clusters.host, 'ks41-host')
      const {stderr, exitCode} = await setAddress()
      assert.equal(exitCode, 2, stderr)
      assert.match(
        stderr,
        /ADDRESS is required \(context "host" has no Node objects to offer addresses from\)[\s\S]*for example: ksctl proxy set-address http:\/\/<node-address>:30721 --context host/,
      )
      assert.ok(!stderr.includes('no terminal'), stderr)
      assert.deepEqual(clusters.host.writes(), [])
    })
  })

  describe('bad input leaves the cluster unchanged', () => {
    const cases: [
      string,
      string[],
      Parameters<typeof seedFake>[1],
      Parameters<typeof seedFake>[2],
      number,
      RegExp,
    ][] = [
      [
        'no address, a NodePort Service and no terminal',
        [],
        'ks41-host',
        {},
        2,
        /ADDRESS is required \(no terminal to ask on\)[\s\S]*ksctl proxy set-address http:\/\/<node-address>:30721 --context host/,
      ],
      [
        'an address without a port',
        ['http://203.0.113.10'],
        'ks41-host',
        {},
        2,
        /must be http\(s\):\/\/host:port with an explicit port/,
      ],
      [
        'an address with another scheme',
        ['tcp://203.0.113.10:30721'],
        'ks41-host',
        {},
        2,
        /must be http\(s\):\/\/host:port/,
      ],
      [
        'an address with a path',
        ['http://203.0.113.10:30721/tower'],
        'ks41-host',
        {},
        2,
        /must not have a path/,
      ],
      ['not a URL', ['203.0.113.10:30721:x'], 'ks41-host', {}, 2, /is not a URL/],
      [
        'a port out of range',
        ['http://203.0.113.10:99999'],
        'ks41-host',
        {},
        2,
        /ADDRESS "http:\/\/203\.0\.113\.10:99999" has port 99999, which is out of range \(1-65535\)/,
      ],
      ['port 0', ['http://203.0.113.10:0'], 'ks41-host', {}, 2, /has port 0, which is out of range/],
      [
        '--agent-image on 3.x',
        ['http://203.0.113.10:30721', '--agent-image', 'x/tower:v1'],
        'ks34-host',
        {},
        2,
        /--agent-image cannot be set on KubeSphere 3\.x/,
      ],
      [
        'a cluster that is not a host',
        ['http://203.0.113.10:30721'],
        'ks34-none',
        {},
        1,
        /is not a KubeSphere host \(role: none\)[\s\S]*ksctl host init --context host --wait/,
      ],
      [
        'a host without the tower Service',
        ['http://203.0.113.10:30721'],
        'ks41-host',
        {tower: 'none'},
        1,
        /service kubesphere-system\/tower not found in context "host"/,
      ],
    ]
    for (const [name, argv, fixture, options, exit, message] of cases) {
      it(name, async () => {
        seedFake(clusters.host, fixture, options)
        const {stderr, exitCode} = await setAddress(...argv)
        assert.equal(exitCode, exit, stderr)
        assert.match(stderr, message)
        assert.deepEqual(clusters.host.writes(), [])
        assert.deepEqual(clusters.member.requests, [])
      })
    }
  })
})

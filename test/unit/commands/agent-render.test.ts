import assert from 'node:assert/strict'
import {mkdtempSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {dump, load, loadAll} from 'js-yaml'

import AgentRender, {type AgentRenderResult} from '../../../commands/agent/render.js'
import type {ErrorJson} from '../../../src/cli/base-command.js'
import {AGENT_TOKEN, proxyCluster, type ProxyClusterOptions} from '../../fixtures/kubesphere/agent-cluster.js'
import {agentManifestYaml, renderAgentManifest} from '../../../src/kubesphere/agent-manifest.js'
import {LOAD_BALANCER_IP, TOWER_NODE_PORT} from '../../../src/kubesphere-standin/fixtures.js'
import {restPath} from '../../fixtures/kubesphere/rest-path.js'
import {golden, goldenCases} from '../../helpers/agent-golden.js'
import type {FakeApiServer} from '../../helpers/fake-apiserver.js'
import {seedFake, startFakeClusters, type FakeClusters} from '../../helpers/fake-clusters.js'
import {runCommand} from '../../helpers/run-command.js'

/** The tower LoadBalancer address of the fake 3.4 host, as KubeSphere derives it. */
const loadBalancerAddress = `http://${LOAD_BALANCER_IP}:8080`

/** A golden file's manifest with another proxy address: the command must print what the renderer does. */
function goldenWithAddress(name: string, proxyAddress: string): string {
  const options = goldenCases[name]
  assert.ok(options !== undefined, name)
  return agentManifestYaml(renderAgentManifest({...options, proxyAddress}))
}

function putCluster(fake: FakeApiServer, name: string, options: ProxyClusterOptions = {}): void {
  const cluster = proxyCluster(name, options)
  fake.put(restPath(cluster), cluster)
}

describe('ksctl agent render', () => {
  let clusters: FakeClusters
  let dir: string

  beforeEach(async () => {
    clusters = await startFakeClusters()
    dir = mkdtempSync(join(tmpdir(), 'ksctl-agent-render-'))
  })

  afterEach(async () => {
    await clusters.stop()
    rmSync(dir, {recursive: true, force: true})
  })

  const render = (...argv: string[]) =>
    runCommand<AgentRenderResult>(AgentRender, ['--kubeconfig', clusters.kubeconfigPath, ...argv])

  const noRequests = () => clusters.host.requests.length === 0 && clusters.member.requests.length === 0

  it("prints a 3.4 host's manifest with the tower LoadBalancer address, as KubeSphere serves it", async () => {
    seedFake(clusters.host, 'ks34-host')
    putCluster(clusters.host, 'member1')
    const {stdout, stderr, exitCode} = await render('member1', '--context', 'host', '--log-level', 'debug')
    assert.equal(exitCode, 0)
    assert.equal(stdout, goldenWithAddress('v3-default', loadBalancerAddress))
    assert.ok(
      stderr.includes(
        `proxy ${loadBalancerAddress} from LoadBalancer ingress of service kubesphere-system/tower`,
      ),
    )
    assert.ok(!stderr.includes(AGENT_TOKEN))
    assert.deepEqual(clusters.host.writes(), [])
    assert.equal(clusters.member.requests.length, 0)
  })

  it('refuses a 4.1 host whose tower is a NodePort, with the ksctl proxy set-address command to run', async () => {
    seedFake(clusters.host, 'ks41-host')
    putCluster(clusters.host, 'member1')
    const {stderr, exitCode} = await render('member1', '--context', 'host')
    assert.equal(exitCode, 1)
    assert.match(
      stderr,
      /service kubesphere-system\/tower has no public address in context "host" \(it is of type NodePort\)/,
    )
    assert.match(
      stderr,
      new RegExp(
        `ksctl proxy set-address http://<node-ip>:${TOWER_NODE_PORT} --context host`.replaceAll('.', '\\.'),
      ),
    )
    assert.ok(!stderr.includes(AGENT_TOKEN))
  })

  it("renders a 4.1 host's four objects once proxyPublishAddress is configured, the token in the JSON objects", async () => {
    seedFake(clusters.host, 'ks41-host', {proxyPublishAddress: 'http://192.0.2.10:8080'})
    putCluster(clusters.host, 'member1')
    const {stdout, exitCode} = await render('member1', '--context', 'host')
    assert.equal(exitCode, 0)
    assert.equal(stdout, golden('v4-default'))

    const {stdout: json, result} = await render('member1', '--context', 'host', '--json')
    assert.deepEqual(JSON.parse(json), result)
    assert.deepEqual(result, {
      name: 'member1',
      edition: '4.x',
      context: 'host',
      proxyAddress: 'http://192.0.2.10:8080',
      proxyAddressSource: 'proxyPublishAddress in configmap kubesphere-config',
      runtime: 'tower',
      agentAddress: 'http://192.0.2.10:8080',
      image: 'kubesphere/tower:v0.2.1',
      replicas: 1,
      objects: loadAll(golden('v4-default')),
    })
  })

  it('reads a 4.x proxy address and agent image from the tower Secret before kubesphere-config', async () => {
    seedFake(clusters.host, 'ks41-host', {proxyPublishAddress: 'http://198.51.100.1:30721'})
    const settings = {
      proxyPublishAddress: 'http://198.51.100.2:30721',
      agentImage: 'mirror.example.com/tower:v0.2.1',
    }
    clusters.host.put('/api/v1/namespaces/kubesphere-system/secrets/tower', {
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'config.kubesphere.io/cluster-connection-config',
      metadata: {name: 'tower', namespace: 'kubesphere-system'},
      data: {'configuration.yaml': Buffer.from(dump(settings)).toString('base64')},
    })
    putCluster(clusters.host, 'member1')
    const {result} = await render('member1', '--context', 'host', '--json')
    assert.equal(result?.proxyAddress, 'http://198.51.100.2:30721')
    assert.equal(result.proxyAddressSource, 'proxyPublishAddress in secret tower')
    assert.equal(result.image, 'mirror.example.com/tower:v0.2.1')
  })

  it("uses ks-apiserver's own fallback image, and says so, when a 3.x kubesphere-config has no agentImage", async () => {
    seedFake(clusters.host, 'ks34-host')
    const path = '/api/v1/namespaces/kubesphere-system/configmaps/kubesphere-config'
    const configMap = clusters.host.get(path)!
    const data = configMap.data as Record<string, string>
    const config = load(data['kubesphere.yaml']!) as {multicluster: Record<string, unknown>}
    delete config.multicluster.agentImage
    clusters.host.put(path, {...configMap, data: {'kubesphere.yaml': dump(config)}})
    putCluster(clusters.host, 'member1')
    const {stderr, result} = await render('member1', '--context', 'host', '--json')
    assert.equal(result?.image, 'kubesphere/tower:v1.0')
    assert.match(
      stderr,
      /has no multicluster\.agentImage, so the image is ks-apiserver's fallback kubesphere\/tower:v1\.0/,
    )
  })

  it('suggests waiting for a pending LoadBalancer, or setting the address with its nodePort', async () => {
    seedFake(clusters.host, 'ks34-host', {tower: 'load-balancer-pending'})
    putCluster(clusters.host, 'member1')
    const {stderr, exitCode} = await render('member1', '--context', 'host')
    assert.equal(exitCode, 1)
    assert.match(stderr, /its LoadBalancer has no ingress yet/)
    assert.match(stderr, /ksctl proxy set-address http:\/\/<node-ip>:30721 --context host/)
    assert.match(stderr, /kubectl --context host -n kubesphere-system get service tower --watch/)
  })

  it('takes --proxy-address over what the host says', async () => {
    seedFake(clusters.host, 'ks41-host')
    putCluster(clusters.host, 'member1')
    const {exitCode, result} = await render(
      'member1',
      '--context',
      'host',
      '--proxy-address',
      'http://203.0.113.7:30721',
      '--json',
    )
    assert.equal(exitCode, 0)
    assert.equal(result?.proxyAddress, 'http://203.0.113.7:30721')
    assert.equal(result.proxyAddressSource, '--proxy-address')
  })

  it('names the cluster and the context when the host has no such Cluster', async () => {
    seedFake(clusters.host, 'ks34-host')
    const {stdout, exitCode} = await render('member9', '--context', 'host', '--json')
    assert.equal(exitCode, 1)
    const {error} = JSON.parse(stdout) as ErrorJson
    assert.equal(error.code, 'NOT_FOUND')
    assert.equal(
      error.message,
      'cluster "member9" not found in context "host" (clusters.cluster.kubesphere.io)',
    )
    assert.deepEqual(error.suggestions, [
      'list the clusters this host knows: kubectl --context host get clusters.cluster.kubesphere.io',
    ])
  })

  it('explains that a direct cluster runs no agent, quoting KubeSphere', async () => {
    seedFake(clusters.host, 'ks34-host')
    const {stderr, exitCode} = await render('host', '--context', 'host')
    assert.equal(exitCode, 1)
    assert.match(stderr, /cluster "host" in context "host" has connection type "direct", not "proxy"/)
    assert.match(stderr, /KubeSphere: "cluster host is not using proxy connection"/)
  })

  it('asks to wait for Initialized when tower has not written the token yet', async () => {
    seedFake(clusters.host, 'ks41-host', {proxyPublishAddress: 'http://192.0.2.10:8080'})
    putCluster(clusters.host, 'member1', {token: '', joinFederation: false})
    const {stderr, exitCode} = await render('member1', '--context', 'host')
    assert.equal(exitCode, 1)
    assert.match(stderr, /cluster "member1" in context "host" has no agent token yet/)
    assert.match(
      stderr,
      /kubectl --context host wait --for=condition=Initialized clusters\.cluster\.kubesphere\.io\/member1 --timeout=2m/,
    )
    assert.match(stderr, /only serves clusters with spec\.joinFederation: true/)
    assert.match(stderr, /the tower extension must be installed and enabled/)
  })

  it('warns that tower will refuse the agent of a Cluster without joinFederation', async () => {
    seedFake(clusters.host, 'ks34-host')
    putCluster(clusters.host, 'member1', {joinFederation: false})
    const {stderr, exitCode} = await render('member1', '--context', 'host')
    assert.equal(exitCode, 0)
    assert.match(
      stderr,
      /^warn: the agent will be refused: the tower proxy only serves clusters with spec\.joinFederation: true/m,
    )
  })

  it('refuses a member context: manifests come from the host', async () => {
    seedFake(clusters.member, 'ks34-member')
    const {stderr, exitCode} = await render('member1', '--context', 'member')
    assert.equal(exitCode, 1)
    assert.match(
      stderr,
      /context "member" runs KubeSphere 3\.x as a member: agent manifests come from the host/,
    )
  })

  it('renders from --token and --proxy-address alone, without reading a kubeconfig or any cluster', async () => {
    const argv = ['member1', '--token', AGENT_TOKEN, '--proxy-address', 'http://192.0.2.10:8080']
    const kubeconfig = ['--kubeconfig', join(dir, 'no-such-kubeconfig')]
    const v3 = await runCommand<AgentRenderResult>(AgentRender, [...argv, '--edition', '3', ...kubeconfig])
    assert.equal(v3.exitCode, 0)
    assert.equal(v3.stdout, golden('v3-default'))
    const v4 = await runCommand<AgentRenderResult>(AgentRender, [...argv, ...kubeconfig, '--json'])
    assert.equal(v4.result?.edition, '4.x')
    assert.equal(v4.result.context, undefined)
    assert.deepEqual(v4.result.objects, loadAll(golden('v4-default')))
    assert.ok(noRequests())
  })

  it('renders every option into the manifest', async () => {
    const {stdout, exitCode} = await render(
      'member1',
      ...['--token', AGENT_TOKEN, '--proxy-address', 'https://tower.example.com:443', '--edition', '3'],
      ...['--replicas', '3', '--http-proxy', 'http://proxy.example.com:3128'],
      ...['--image', 'registry.example.com/kubesphere/tower:v0.2.1'],
      ...[
        '--cpu-request',
        '200m',
        '--cpu-limit',
        '2',
        '--memory-request',
        '128Mi',
        '--memory-limit',
        '512Mi',
      ],
    )
    assert.equal(exitCode, 0)
    assert.equal(stdout, golden('v3-replicas-http-proxy-image-resources'))
  })

  it('warns about a token not in the form tower generates, without printing it', async () => {
    const token = 'my-own-agent-token'
    const {stdout, stderr, exitCode} = await render(
      'member1',
      '--token',
      token,
      '--proxy-address',
      'http://192.0.2.10:8080',
    )
    assert.equal(exitCode, 0)
    assert.match(stderr, /^warn: the token \(--token\) is not 64 lowercase hex digits/m)
    assert.ok(!stderr.includes(token))
    assert.ok(stdout.includes(`--token=${token}`))
  })

  it('writes --output with mode 0600, even over a readable file, and says how to apply it', async () => {
    seedFake(clusters.host, 'ks34-host')
    putCluster(clusters.host, 'member1')
    const file = join(dir, 'member1 agent.yaml')
    writeFileSync(file, 'old\n', {mode: 0o644})
    const {stdout, stderr, exitCode, result} = await render(
      'member1',
      '--context',
      'host',
      '--output',
      file,
      '--json',
    )
    assert.equal(exitCode, 0)
    assert.equal(statSync(file).mode & 0o777, 0o600)
    assert.equal(readFileSync(file, 'utf8'), goldenWithAddress('v3-default', loadBalancerAddress))
    assert.equal(result?.file, file)
    assert.equal(result.objects, undefined)
    assert.ok(!stdout.includes(AGENT_TOKEN))
    assert.ok(stderr.includes(`wrote it to ${file}, readable only by you`))
    assert.ok(
      stderr.includes(`apply it on the member: kubectl --context <member-context> create -f '${file}'`),
    )
    assert.ok(!stderr.includes(AGENT_TOKEN))
  })

  it('writes nothing to stdout with --output', async () => {
    const file = join(dir, 'agent.yaml')
    const {stdout, exitCode} = await render(
      'member1',
      '--token',
      AGENT_TOKEN,
      '--proxy-address',
      'http://192.0.2.10:8080',
      '--output',
      file,
    )
    assert.equal(exitCode, 0)
    assert.equal(stdout, '')
    assert.equal(statSync(file).mode & 0o777, 0o600)
  })

  describe('refuses bad input with exit 2, naming the flag with an example, before any request', () => {
    const token = ['--token', AGENT_TOKEN]
    const address = ['--proxy-address', 'http://192.0.2.10:8080']
    const cases: [string, string[], RegExp][] = [
      ['an upper-case name', ['Member_1', ...token, ...address], /^invalid cluster name "Member_1" \(NAME\)/],
      [
        'a 61-character name',
        ['a'.repeat(61), '--context', 'host'],
        /at most 60 characters .*Service mc-NAME/,
      ],
      [
        'an address without a scheme',
        ['member1', '--proxy-address', '192.0.2.10:8080'],
        /^--proxy-address "192\.0\.2\.10:8080" is not a URL/,
      ],
      [
        'an address without a port',
        ['member1', ...token, '--proxy-address', 'http://192.0.2.10'],
        /^--proxy-address "http:\/\/192\.0\.2\.10" must be http\(s\):\/\/host:port with an explicit port/,
      ],
      [
        'an address with a path',
        ['member1', '--proxy-address', 'http://192.0.2.10:8080/connect'],
        /^--proxy-address .* must not have a path, query or credentials/,
      ],
      ['zero replicas', ['member1', '--replicas', '0'], /^--replicas "0" must be a whole number, at least 1/],
      ['replicas in words', ['member1', '--replicas', 'two'], /^--replicas "two" must be a whole number/],
      ['edition 5', ['member1', ...token, ...address, '--edition', '5'], /^--edition "5" must be 3 or 4/],
      [
        '--edition without --token',
        ['member1', '--edition', '4'],
        /^--edition is only for rendering from a token/,
      ],
      [
        '--token without --proxy-address',
        ['member1', ...token],
        /reads no cluster, so it needs --proxy-address/,
      ],
      [
        '--token with --context',
        ['member1', ...token, ...address, '--context', 'host'],
        /^--context cannot be used with --token/,
      ],
      ['an empty token', ['member1', '--token', '', ...address], /^the token \(--token\) is empty/],
      [
        'a CPU limit in words',
        ['member1', '--cpu-limit', 'lots'],
        /^--cpu-limit "lots" is not a Kubernetes quantity/,
      ],
      [
        'a SOCKS proxy',
        ['member1', '--http-proxy', 'socks5://proxy:1080'],
        /^--http-proxy "socks5:\/\/proxy:1080" is not an http\(s\):\/\/ proxy URL/,
      ],
    ]
    for (const [what, argv, message] of cases) {
      it(what, async () => {
        seedFake(clusters.host, 'ks34-host')
        const {stdout, exitCode} = await render(...argv, '--json')
        assert.equal(exitCode, 2)
        const {error} = JSON.parse(stdout) as ErrorJson
        assert.equal(error.code, 'INVALID_INPUT')
        assert.match(error.message, message)
        assert.ok(
          error.suggestions.some((suggestion) => /e\.g\.|^use |leave out|copy it/.test(suggestion)),
          error.suggestions.join('\n'),
        )
        assert.ok(noRequests())
      })
    }
  })
})

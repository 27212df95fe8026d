import assert from 'node:assert/strict'
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {loadAll} from 'js-yaml'

import AgentRender, {type AgentRenderResult} from '../../../commands/agent/render.js'
import MemberJoin, {type MemberJoinOutput} from '../../../commands/member/join.js'
import {
  agentManifestYaml,
  defaultKsctlAgentImage,
  renderKsctlAgentManifest,
  type ManifestObject,
} from '../../../src/kubesphere/agent-manifest.js'
import {AGENT_TOKEN, proxyCluster} from '../../fixtures/kubesphere/agent-cluster.js'
import {restPath} from '../../fixtures/kubesphere/rest-path.js'
import {seedFake, startFakeClusters, type FakeClusters} from '../../helpers/fake-clusters.js'
import {KubeSphereStandIn} from '../../helpers/kubesphere-standin.js'
import {runCommand} from '../../helpers/run-command.js'
import {loopbackPki} from '../../helpers/test-pki.js'

const towerServicePath = '/api/v1/namespaces/kubesphere-system/services/tower'
const proxyCaPath = '/api/v1/namespaces/kubesphere-system/secrets/ksctl-tower-ca'
const PUBLISHED = 'http://192.0.2.10:30721'
const PIN = `sha256:${'e'.repeat(64)}`

/** What `ksctl proxy install` does to the host, as far as these commands look: the tower Service and the CA. */
async function runKsctlProxy(clusters: FakeClusters, options: {ca?: boolean} = {}): Promise<void> {
  const service = clusters.host.get(towerServicePath)
  assert.ok(service !== undefined)
  clusters.host.put(towerServicePath, {
    ...service,
    spec: {...(service.spec as object), selector: {'app.kubernetes.io/name': 'ksctl-tower-proxy'}},
  })
  if (options.ca === false) return
  const {ca} = await loopbackPki('ksctl-proxy')
  clusters.host.put(proxyCaPath, {
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'kubernetes.io/tls',
    metadata: {name: 'ksctl-tower-ca', namespace: 'kubesphere-system'},
    data: {
      'tls.crt': Buffer.from(ca.certPem).toString('base64'),
      'tls.key': Buffer.from(ca.keyPem).toString('base64'),
    },
  })
}

describe("--runtime: ksctl's agent or Tower's", () => {
  let clusters: FakeClusters
  let dir: string
  let standIn: KubeSphereStandIn | undefined

  beforeEach(async () => {
    clusters = await startFakeClusters()
    dir = mkdtempSync(join(tmpdir(), 'ksctl-agent-runtime-'))
    seedFake(clusters.host, 'ks41-host', {proxyPublishAddress: PUBLISHED})
  })

  afterEach(async () => {
    await standIn?.stop()
    standIn = undefined
    await clusters.stop()
    rmSync(dir, {recursive: true, force: true})
  })

  const noWrites = () => clusters.host.writes().length === 0 && clusters.member.writes().length === 0

  describe('ksctl agent render', () => {
    const render = (...argv: string[]) =>
      runCommand<AgentRenderResult>(AgentRender, ['--kubeconfig', clusters.kubeconfigPath, ...argv])

    beforeEach(() => {
      const cluster = proxyCluster('member1')
      clusters.host.put(restPath(cluster), cluster)
    })

    it("renders ksctl's agent for a host that runs ksctl's proxy, says why on stderr, and keeps the CA key and the token out of stderr", async () => {
      await runKsctlProxy(clusters)
      const {ca} = await loopbackPki('ksctl-proxy')
      const {stdout, stderr, exitCode} = await render('member1', '--context', 'host')
      assert.equal(exitCode, 0, stderr)
      assert.equal(
        stdout,
        agentManifestYaml(
          renderKsctlAgentManifest({
            clusterName: 'member1',
            token: AGENT_TOKEN,
            proxyAddress: 'wss://192.0.2.10:30721',
            trust: {caPem: ca.certPem},
            image: defaultKsctlAgentImage(),
          }),
        ),
      )
      assert.match(
        stderr,
        /^runtime ksctl: the host runs ksctl's proxy: service kubesphere-system\/tower selects app\.kubernetes\.io\/name=ksctl-tower-proxy$/m,
      )
      assert.match(
        stderr,
        /proxy wss:\/\/192\.0\.2\.10:30721 from proxyPublishAddress in configmap kubesphere-config, trusted by the CA in secret kubesphere-system\/ksctl-tower-ca/,
      )
      for (const output of [stdout, stderr]) assert.ok(!output.includes(ca.keyPem.split('\n')[1] ?? 'x'))
      assert.ok(!stderr.includes(AGENT_TOKEN))
      assert.deepEqual(noWrites(), true)
    })

    it("renders Tower's agent, as before, for a host that runs Tower's proxy, and says so", async () => {
      const {stdout, stderr, exitCode, result} = await render('member1', '--context', 'host', '--json')
      assert.equal(exitCode, 0, stderr)
      assert.match(
        stderr,
        /^runtime tower: the host runs Tower's proxy: service kubesphere-system\/tower selects app=tower$/m,
      )
      assert.equal(result?.runtime, 'tower')
      assert.ok(JSON.parse(stdout))
      assert.ok(
        (result?.objects ?? []).some(
          (object) => object.kind === 'Deployment' && object.metadata.name === 'cluster-agent',
        ),
      )
    })

    it("refuses --runtime ksctl on a host that runs Tower's proxy, naming the Service and the install to run", async () => {
      const {stdout, stderr, exitCode} = await render('member1', '--context', 'host', '--runtime', 'ksctl')
      assert.equal(exitCode, 1)
      assert.equal(stdout, '')
      assert.match(
        stderr,
        /--runtime ksctl: the host in context "host" runs Tower's proxy \(service kubesphere-system\/tower selects app=tower\), and ksctl's agent cannot connect to it/,
      )
      assert.match(stderr, /ksctl proxy install --context host/)
      assert.match(stderr, /leave out --runtime, or --runtime tower/)
    })

    it("refuses --runtime tower on a host that runs ksctl's proxy", async () => {
      await runKsctlProxy(clusters)
      const {stdout, stderr, exitCode} = await render('member1', '--context', 'host', '--runtime', 'tower')
      assert.equal(exitCode, 1)
      assert.equal(stdout, '')
      assert.match(stderr, /--runtime tower: the host in context "host" runs ksctl's proxy/)
      assert.match(stderr, /websocket: bad handshake/)
      assert.match(stderr, /ksctl proxy uninstall --context host/)
    })

    it("names the missing CA Secret of ksctl's proxy, and the pin as the way around it", async () => {
      await runKsctlProxy(clusters, {ca: false})
      const {stderr, exitCode} = await render('member1', '--context', 'host')
      assert.equal(exitCode, 1)
      assert.match(stderr, /secret kubesphere-system\/ksctl-tower-ca does not exist in context "host"/)
      assert.match(stderr, /kubectl --context host -n kubesphere-system get deployment ksctl-tower-proxy/)
      assert.match(stderr, /--proxy-pin sha256:<hex>/)
    })

    it('with --proxy-pin: the pin, and the CA Secret is not even read', async () => {
      await runKsctlProxy(clusters)
      const {stdout, exitCode, stderr} = await render('member1', '--context', 'host', '--proxy-pin', PIN)
      assert.equal(exitCode, 0, stderr)
      const objects = loadAll(stdout) as ManifestObject[]
      assert.ok(!objects.some((object) => object.kind === 'ConfigMap'))
      assert.ok(stdout.includes(`--proxy-pin=${PIN}`))
      assert.ok(!clusters.host.requests.some((request) => request.path === proxyCaPath))
    })

    it("refuses --proxy-pin for a host that runs Tower's proxy, and --proxy-pin with --runtime tower", async () => {
      const detected = await render('member1', '--context', 'host', '--proxy-pin', PIN)
      assert.equal(detected.exitCode, 2)
      assert.match(detected.stderr, /--proxy-pin is for ksctl's agent, and the host runs Tower's proxy/)
      const explicit = await render('member1', '--context', 'host', '--runtime', 'tower', '--proxy-pin', PIN)
      assert.equal(explicit.exitCode, 2)
      assert.match(
        explicit.stderr,
        /--proxy-pin is for ksctl's agent: Tower's agent dials the proxy without TLS/,
      )
    })

    it('with --json and --output: the token only in the 0600 file, the runtime and the trust in the JSON', async () => {
      await runKsctlProxy(clusters)
      const file = join(dir, 'agent.yaml')
      const {stdout, result, exitCode} = await render(
        'member1',
        '--context',
        'host',
        '--output',
        file,
        '--json',
      )
      assert.equal(exitCode, 0)
      assert.ok(
        !stdout.includes(AGENT_TOKEN) && !stdout.includes(Buffer.from(AGENT_TOKEN).toString('base64')),
      )
      assert.equal(result?.runtime, 'ksctl')
      assert.equal(result?.proxyTrust, 'ca')
      assert.equal(result?.agentAddress, 'wss://192.0.2.10:30721')
      assert.equal(result?.proxyAddress, PUBLISHED)
      assert.ok(readFileSync(file, 'utf8').includes(Buffer.from(AGENT_TOKEN).toString('base64')))
    })

    describe('from a token, without a cluster', () => {
      const offline = ['member1', '--token', AGENT_TOKEN, '--proxy-address', PUBLISHED]

      it("renders ksctl's agent with --runtime ksctl and --proxy-ca, reading no cluster", async () => {
        const {ca} = await loopbackPki('ksctl-proxy')
        const caFile = join(dir, 'ca.crt')
        writeFileSync(caFile, ca.certPem)
        const {stdout, stderr, exitCode} = await render(
          ...offline,
          '--runtime',
          'ksctl',
          '--proxy-ca',
          caFile,
        )
        assert.equal(exitCode, 0, stderr)
        assert.ok(stdout.includes('--proxy-server=wss://192.0.2.10:30721'))
        assert.match(
          stderr,
          /^runtime ksctl: --runtime ksctl, rendered from a token \(--token\), without reading the host$/m,
        )
        assert.equal(clusters.host.requests.length + clusters.member.requests.length, 0)
      })

      const refusals: [string, string[], RegExp][] = [
        [
          '--runtime ksctl without --proxy-ca or --proxy-pin',
          ['--runtime', 'ksctl'],
          /needs how the agent trusts ksctl's proxy: --proxy-ca or --proxy-pin/,
        ],
        [
          '--proxy-pin for Tower',
          ['--proxy-pin', PIN],
          /--proxy-pin is for ksctl's agent, and rendering from a token \(--token\) without --runtime renders Tower's\n.*add --runtime ksctl/,
        ],
        ['a malformed pin', ['--runtime', 'ksctl', '--proxy-pin', 'sha256:abc'], /must be sha256: and 64/],
        [
          'both --proxy-ca and --proxy-pin',
          ['--runtime', 'ksctl', '--proxy-pin', PIN, '--proxy-ca', 'x'],
          /give one of/,
        ],
        [
          'an unknown runtime',
          ['--runtime', 'rancher'],
          /Expected --runtime=rancher to be one of: ksctl, tower/,
        ],
      ]
      for (const [name, argv, message] of refusals) {
        it(`refuses ${name} with exit 2, reading nothing`, async () => {
          const {stderr, exitCode} = await render(...offline, ...argv)
          assert.equal(exitCode, 2, stderr)
          assert.match(stderr, message)
          assert.equal(clusters.host.requests.length + clusters.member.requests.length, 0)
        })
      }

      it('refuses a --proxy-ca file that holds a private key, without printing it', async () => {
        const {ca} = await loopbackPki('ksctl-proxy')
        const caFile = join(dir, 'ca.pem')
        writeFileSync(caFile, ca.certPem + ca.keyPem)
        const {stderr, exitCode} = await render(...offline, '--runtime', 'ksctl', '--proxy-ca', caFile)
        assert.equal(exitCode, 2)
        assert.match(stderr, /holds a private key: the agent needs only the CA's certificate/)
        assert.ok(!stderr.includes(ca.keyPem.split('\n')[1] ?? 'x'))
      })
    })
  })

  describe('ksctl member join', () => {
    beforeEach(() => seedFake(clusters.member, 'plain'))

    const join = (...argv: string[]) =>
      runCommand<MemberJoinOutput>(MemberJoin, [
        'member1',
        ...['--kubeconfig', clusters.kubeconfigPath, '--host-context', 'host', '--member-context', 'member'],
        ...argv,
      ])
    const memberObject = (path: string) => clusters.member.get(path)

    it("applies ksctl's agent on a host that runs ksctl's proxy: the token in the Secret only, nowhere in the output", async () => {
      await runKsctlProxy(clusters)
      standIn = new KubeSphereStandIn(clusters.kubeconfigPath, 'host', 'member').start()
      const {stdout, stderr, exitCode, result} = await join('--apply', '--json', '--timeout', '20s')
      assert.equal(exitCode, 0, stderr)
      assert.equal(result?.runtime, 'ksctl')
      assert.equal(result?.agentAddress, 'wss://192.0.2.10:30721')
      assert.match(
        stderr,
        /^runtime ksctl: the host runs ksctl's proxy: service kubesphere-system\/tower selects/m,
      )
      assert.match(
        stderr,
        /^member: ksctl's agent applied \(deployment kubesphere-system\/ksctl-tower-agent/m,
      )
      const token = (
        clusters.host.get('/apis/cluster.kubesphere.io/v1alpha1/clusters/member1')?.spec as {
          connection: {token: string}
        }
      ).connection.token
      assert.match(token, /^[0-9a-f]{64}$/)
      const secret = memberObject('/api/v1/namespaces/kubesphere-system/secrets/ksctl-tower-agent-token')
      assert.deepEqual(secret?.data, {token: Buffer.from(token).toString('base64')})
      const deployment = memberObject(
        '/apis/apps/v1/namespaces/kubesphere-system/deployments/ksctl-tower-agent',
      )
      assert.ok(deployment !== undefined)
      assert.ok(!JSON.stringify(deployment).includes(token))
      for (const path of [
        '/api/v1/namespaces/kubesphere-system/serviceaccounts/ksctl-tower-agent',
        '/apis/rbac.authorization.k8s.io/v1/clusterroles/ksctl-tower-agent-impersonator',
        '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/ksctl-tower-agent-impersonator',
        '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/ksctl-kubesphere-identity',
        '/api/v1/namespaces/kubesphere-system/configmaps/ksctl-tower-agent-proxy-ca',
      ])
        assert.ok(memberObject(path) !== undefined, path)
      assert.equal(
        memberObject('/apis/apps/v1/namespaces/kubesphere-system/deployments/cluster-agent'),
        undefined,
      )
      for (const output of [stdout, stderr]) {
        assert.ok(!output.includes(token), 'no token')
        assert.ok(!output.includes(Buffer.from(token).toString('base64')), 'no token in base64')
      }
    })

    it('shows the token Secret redacted in a dry run, and changes nothing', async () => {
      await runKsctlProxy(clusters)
      const {stdout, exitCode, stderr} = await join('--apply', '--dry-run')
      assert.equal(exitCode, 0, stderr)
      assert.match(stdout, /^would change member: secrets kubesphere-system\/ksctl-tower-agent-token/m)
      assert.match(stdout, /^\+ {2}token: <redacted sha256:[0-9a-f]{8}>$/m)
      assert.equal(
        memberObject('/apis/apps/v1/namespaces/kubesphere-system/deployments/ksctl-tower-agent'),
        undefined,
      )
      assert.ok(clusters.member.writes().every((write) => write.dryRun))
    })

    const refusals: [string, () => Promise<void>, string[], RegExp][] = [
      [
        "--runtime ksctl on a host that runs Tower's proxy",
        () => Promise.resolve(),
        ['--runtime', 'ksctl'],
        /--runtime ksctl: the host in context "host" runs Tower's proxy \(service kubesphere-system\/tower selects app=tower\)/,
      ],
      [
        "--runtime tower on a host that runs ksctl's proxy",
        () => runKsctlProxy(clusters),
        ['--runtime', 'tower'],
        /--runtime tower: the host in context "host" runs ksctl's proxy/,
      ],
      [
        "a host that runs ksctl's proxy without its CA Secret",
        () => runKsctlProxy(clusters, {ca: false}),
        [],
        /secret kubesphere-system\/ksctl-tower-ca does not exist in context "host"/,
      ],
      [
        "--proxy-pin on a host that runs Tower's proxy",
        () => Promise.resolve(),
        ['--proxy-pin', PIN],
        /--proxy-pin is for ksctl's agent, and the host runs Tower's proxy/,
      ],
    ]
    for (const [name, setUp, argv, message] of refusals) {
      it(`refuses ${name}, naming what to do, and changes nothing on either cluster`, async () => {
        await setUp()
        const {stderr, exitCode} = await join('--apply', ...argv)
        assert.notEqual(exitCode, 0)
        assert.match(stderr, message)
        assert.ok(noWrites(), JSON.stringify([...clusters.host.writes(), ...clusters.member.writes()]))
      })
    }
  })
})

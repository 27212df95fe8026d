import assert from 'node:assert/strict'
import {readFileSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {PatchStrategy, setHeaderOptions} from '@kubernetes/client-node'
import {dump, load} from 'js-yaml'

import type {HostInviteResult} from '../../src/kubesphere/host-invite.js'
import type {JoinTokenList} from '../../src/join-token/manage.js'
import {ClusterClients} from '../../src/k8s/clients.js'
import {ClusterResource} from '../../src/k8s/resources.js'
import {isConditionTrue, type KubeSphereCluster} from '../../src/kubesphere/cluster-object.js'
import type {FixtureName} from '../../src/kubesphere-standin/fixtures.js'
import {secrets} from '../../src/kubesphere-standin/fixtures.js'
import {startKubeSphereStandIn} from '../../src/kubesphere-standin/stand-in.js'
import type {StandInLoop} from '../../src/kubesphere-standin/loop.js'
import {certificateFingerprint, createCertificateAuthority} from '../../src/pki/certificates.js'
import {ksctl, type ProcessOutcome} from '../helpers/ksctl-process.js'
import {startKsctl, until, type RunningKsctl} from '../helpers/ksctl-running.js'
import {buildImage} from '../../image/build.js'
import {unpackCached, type UnpackedImage} from '../../image/unpack.js'
import type {RunningPod} from '../helpers/pod-runner.js'
import {tempDir} from '../helpers/temp-dir.js'
import {freeClusterPorts, freePort} from '../testbed/http.js'
import {adminApis, resetCluster} from '../testbed/seed.js'
import {snapshot} from './cluster-state.js'
import {testBed} from './hooks.js'
import {removeKsctlAgentClusterObjects, runAppliedAgent} from './ksctl-runtime-parts.js'

const NAMESPACE = 'kubesphere-system'

interface KubeconfigDocument {
  clusters: {name: string}[]
  users: {name: string}[]
  contexts: {name: string; context: {cluster: string; user: string}}[]
  'current-context'?: string
}

/** A kubeconfig with the member's context alone: what an operator in the member's data centre has. */
function memberOnlyKubeconfig(dir: string): string {
  const full = load(readFileSync(testBed().kubeconfigPath, 'utf8')) as KubeconfigDocument
  const context = full.contexts.find((entry) => entry.name === 'member')
  assert.ok(context !== undefined)
  const file = path.join(dir, 'member-kubeconfig')
  writeFileSync(
    file,
    dump({
      ...full,
      clusters: full.clusters.filter((cluster) => cluster.name === context.context.cluster),
      users: full.users.filter((user) => user.name === context.context.user),
      contexts: [context],
      'current-context': 'member',
    }),
    {mode: 0o600},
  )
  return file
}

const editions: {edition: string; host: FixtureName; member: FixtureName; jwtSecret: string}[] = [
  {edition: '3.4', host: 'ks34-host', member: 'ks34-none', jwtSecret: secrets.hostJwtSecret},
  {edition: '4.1', host: 'ks41-host', member: 'plain', jwtSecret: secrets.ks41JwtSecret},
]

for (const {edition, host: hostFixture, member: memberFixture, jwtSecret} of editions) {
  describe(`two-sided join on KubeSphere ${edition}: host invite, then member register with the member's kubeconfig alone`, function () {
    this.timeout(180_000)
    let proxy: RunningKsctl
    let agent: RunningPod | undefined
    let image: UnpackedImage
    let standIn: StandInLoop | undefined
    let proxyAddress: string
    let dir: string
    let memberKubeconfig: string
    const hostClient = () => ClusterClients.load({kubeconfig: testBed().kubeconfigPath}).forContext('host')

    before(async function () {
      // A warm build redoes only ksctl's layer.
      this.timeout(600_000)
      image = await unpackCached((await buildImage()).archive)
    })

    beforeEach(async () => {
      const kubeconfig = testBed().kubeconfigPath
      const [listenPort, frontEndPort] = [await freePort(), await freePort()]
      proxyAddress = `https://127.0.0.1:${String(listenPort)}`
      await resetCluster(kubeconfig, 'host', hostFixture, {proxyPublishAddress: proxyAddress})
      await resetCluster(kubeconfig, 'member', memberFixture)
      // What `ksctl proxy install` does to the host: the tower Service sends agents to ksctl's proxy.
      await adminApis(kubeconfig, 'host').core.patchNamespacedService(
        {
          name: 'tower',
          namespace: NAMESPACE,
          body: [
            {op: 'replace', path: '/spec/selector', value: {'app.kubernetes.io/name': 'ksctl-tower-proxy'}},
          ],
        },
        setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
      )
      const ports = await freeClusterPorts(4)
      // ksctl's proxy in Kubernetes mode, in the role of the host's ksctl-tower-proxy Deployment.
      proxy = startKsctl([
        ...['tower', 'proxy', '--kubeconfig', kubeconfig, '--context', 'host', '--resync', '300ms'],
        ...[
          '--listen',
          `127.0.0.1:${String(listenPort)}`,
          '--front-end',
          `127.0.0.1:${String(frontEndPort)}`,
        ],
        ...['--cluster-ports', ports.flag],
      ])
      await until(() => proxy.output().includes('tower proxy started'), 'the proxy', {output: proxy.output})
      const clients = ClusterClients.load({kubeconfig})
      // KubeSphere's part: ks-installer on both, and the host's controller, which marks the member Ready only
      // once it reached it through the proxy's port for it (the route Service mc-NAME stands for).
      standIn = startKubeSphereStandIn({
        host: clients.forContext('host'),
        member: clients.forContext('member'),
        memberServer: (cluster) => {
          const port = (cluster.spec?.connection as {kubernetesAPIServerPort?: number} | undefined)
            ?.kubernetesAPIServerPort
          return port === undefined ? undefined : `https://127.0.0.1:${String(port)}`
        },
        intervalMs: 100,
      })
      dir = tempDir('ksctl-two-sided-')
      memberKubeconfig = memberOnlyKubeconfig(dir)
    })

    afterEach(async () => {
      await standIn?.stop()
      standIn = undefined
      await agent?.stop(5)
      agent = undefined
      proxy.process.kill('SIGKILL')
      await Promise.allSettled([proxy.process])
      await removeKsctlAgentClusterObjects()
    })

    /** The host side, with the test bed's kubeconfig (the host's admin). */
    const onHost = (args: string[]) => ksctl([...args, '--kubeconfig', testBed().kubeconfigPath])
    /**
     * The member side: the member's kubeconfig alone, as KUBECONFIG, and a HOME without ~/.kube, so that no host
     * context is anywhere in its environment.
     */
    const onMember = (args: string[]) =>
      ksctl(args, {KUBECONFIG: memberKubeconfig, HOME: dir, XDG_CONFIG_HOME: dir})

    const invite = async (name = 'member1', extra: string[] = []) => {
      const outcome = await onHost(['host', 'invite', name, '--context', 'host', ...extra])
      assert.equal(outcome.exitCode, 0, outcome.stderr)
      const command = outcome.stdout.trim()
      assert.match(
        command,
        /^ksctl member register [a-z0-9-]+ --proxy https:\/\/\S+ --pin sha256:[0-9a-f]{64} --token [a-z2-7]{6}\.[a-z2-7]{26} --wait$/,
      )
      return {outcome, args: command.split(' ').slice(1), token: /--token (\S+)/.exec(command)?.[1] ?? ''}
    }

    /**
     * The member's kubelet, for the agent Deployment that register applied: its pod runs from the image as the
     * Deployment says (the token from Secret ksctl-tower-agent-token, the proxy pinned by an argument).
     */
    const runAgentOnceApplied = async (registered: Promise<unknown>) => {
      agent = await runAppliedAgent({image, metricsPort: await freePort(), abandon: registered})
    }

    it('reaches Ready through the tunnel it opened; the host side prints no credential; the token is used once', async () => {
      const before = await snapshot('host')
      const {outcome: invited, args, token} = await invite()
      const serving = await hostClient().findSecret(NAMESPACE, 'ksctl-tower-serving')
      const pin = certificateFingerprint(serving?.data['tls.crt'] ?? '')
      assert.ok(args.includes(pin), 'the printed pin is the proxy serving key pin')
      assert.ok(args.includes(proxyAddress))
      assert.notDeepEqual(await snapshot('host'), before)

      const registered = onMember([...args, '--timeout', '90s'])
      await runAgentOnceApplied(registered)
      const joined = await registered
      assert.equal(joined.exitCode, 0, `${joined.stderr}\nagent:\n${agent?.output() ?? ''}`)
      assert.match(joined.stdout, /^cluster "member1" is Ready on the host$/m)
      assert.match(joined.stderr, /verified by its pin/)

      const cluster = await hostClient().findCustomObject<KubeSphereCluster>(ClusterResource, 'member1')
      assert.ok(isConditionTrue(cluster, 'Ready'))
      const agentToken = cluster?.spec?.connection?.token ?? ''
      assert.match(agentToken, /^[0-9a-f]{64}$/)
      if (edition === '3.4') {
        const installer = (await adminApis(
          testBed().kubeconfigPath,
          'member',
        ).custom.getNamespacedCustomObject({
          group: 'installer.kubesphere.io',
          version: 'v1alpha1',
          plural: 'clusterconfigurations',
          namespace: NAMESPACE,
          name: 'ks-installer',
        })) as {spec: {authentication: {jwtSecret: string}; multicluster: {clusterRole: string}}}
        assert.equal(installer.spec.authentication.jwtSecret, jwtSecret)
        assert.equal(installer.spec.multicluster.clusterRole, 'member')
      }

      // The token is used: a second register is refused and changes nothing more on the member.
      const afterJoin = await snapshot('member')
      const reused = await onMember([...args, '--timeout', '30s'])
      assert.equal(reused.exitCode, 1)
      assert.match(reused.stderr, /was used at .*\(token_used\); nothing was changed on this cluster/)
      assert.deepEqual(await snapshot('member'), afterJoin)

      // Every host-side output, scanned for the credentials the join moved: none is there.
      const listed = await onHost(['join-token', 'list', '--context', 'host'])
      const listedJson = await onHost(['join-token', 'list', '--context', 'host', '--json'])
      const list = JSON.parse(listedJson.stdout) as JoinTokenList
      assert.deepEqual(
        list.tokens.map((row) => [row.id, row.cluster, row.state]),
        [[token.split('.')[0], 'member1', 'used']],
      )
      const dry = await onHost(['host', 'invite', 'member1', '--context', 'host', '--dry-run'])
      const json = await onHost(['host', 'invite', 'member1', '--context', 'host', '--json'])
      const invitedJson = JSON.parse(json.stdout) as HostInviteResult
      assert.match(invitedJson.invitation.token, /^[a-z2-7]{6}\.[a-z2-7]{26}$/)
      const ca = await hostClient().findSecret(NAMESPACE, 'ksctl-tower-ca')
      const credentials = {
        'the agent token': agentToken,
        "the host's jwtSecret": jwtSecret,
        'the proxy CA key': (ca?.data['tls.key'] ?? '').split('\n')[1] ?? '',
        'the serving key': (serving?.data['tls.key'] ?? '').split('\n')[1] ?? '',
      }
      const outputs: [string, ProcessOutcome][] = [
        ['host invite', invited],
        ['host invite --dry-run', dry],
        ['host invite --json', json],
        ['join-token list', listed],
        ['join-token list --json', listedJson],
      ]
      const found: string[] = []
      for (const [command, outcome] of outputs) {
        for (const [what, value] of Object.entries(credentials)) {
          assert.ok(value.length > 16, what)
          for (const form of [value, Buffer.from(value).toString('base64')]) {
            if (outcome.stdout.includes(form) || outcome.stderr.includes(form))
              found.push(`${what} in ${command}`)
          }
        }
      }
      // The member side's own output holds neither either.
      for (const [what, value] of Object.entries(credentials)) {
        if (`${joined.stdout}${joined.stderr}`.includes(value)) found.push(`${what} in member register`)
      }
      assert.deepEqual(found, [])
    })

    it('a wrong pin, an expired, a revoked and a wrong-cluster token fail with a clear error and nothing changed on the member', async () => {
      const {args} = await invite()
      const otherKey = await createCertificateAuthority({commonName: 'not-the-proxy', validityDays: 1})
      const wrongPin = args.map((arg) =>
        arg.startsWith('sha256:') ? certificateFingerprint(otherKey.certPem) : arg,
      )
      const {args: expiring, token: expiringToken} = await invite('member1', ['--ttl', '1s'])
      const {args: revoked, token: revokedToken} = await invite('member1')
      const revoke = await onHost([
        'join-token',
        'revoke',
        revokedToken.split('.')[0] ?? '',
        '--context',
        'host',
      ])
      assert.equal(revoke.exitCode, 0, revoke.stderr)
      const {token: otherClusterToken} = await invite('member2')
      const wrongCluster = args.map((arg) => (/^[a-z2-7]{6}\./.test(arg) ? otherClusterToken : arg))
      // Expired once the host's list says so: the proxy and the list read the same record and clock.
      await until(
        async () => {
          const list = JSON.parse(
            (await onHost(['join-token', 'list', '--context', 'host', '--json'])).stdout,
          ) as JoinTokenList
          return list.tokens.find((row) => row.id === expiringToken.split('.')[0])?.state === 'expired'
        },
        'the 1s token to expire',
        {timeoutMs: 20_000},
      )
      const cases: [string, string[], RegExp][] = [
        [
          'a wrong pin',
          wrongPin,
          /presented key sha256:[0-9a-f]{64}, not the pinned sha256:[0-9a-f]{64}: nothing was sent to it, and nothing was changed/,
        ],
        ['an expired token', expiring, /expired at .*\(token_expired\); nothing was changed on this cluster/],
        [
          'a revoked token',
          revoked,
          /was revoked at .*\(token_revoked\); nothing was changed on this cluster/,
        ],
        [
          "another cluster's token",
          wrongCluster,
          /was issued for cluster "member2", not "member1" \(token_wrong_cluster\); nothing was changed on this cluster/,
        ],
      ]
      const member = await snapshot('member')
      for (const [what, caseArgs, message] of cases) {
        const outcome = await onMember([...caseArgs, '--timeout', '30s'])
        assert.equal(outcome.exitCode, 1, `${what}: ${outcome.stderr}`)
        assert.match(outcome.stderr, message, what)
        assert.deepEqual(await snapshot('member'), member, what)
      }
      // The first token was never used by any of these: it still joins.
      const registered = onMember([...args, '--timeout', '90s'])
      await runAgentOnceApplied(registered)
      const joined = await registered
      assert.equal(joined.exitCode, 0, joined.stderr)
    })
  })
}

describe("host invite on a host that runs Tower's proxy", function () {
  this.timeout(60_000)

  it('says so, offers what can be done instead, and changes nothing', async () => {
    await resetCluster(testBed().kubeconfigPath, 'host', 'ks41-host', {
      proxyPublishAddress: 'https://127.0.0.1:30721',
    })
    const before = await snapshot('host')
    const outcome = await ksctl([
      'host',
      'invite',
      'member1',
      '--context',
      'host',
      '--kubeconfig',
      testBed().kubeconfigPath,
    ])
    assert.equal(outcome.exitCode, 1)
    assert.match(outcome.stderr, /runs KubeSphere's Tower proxy .* which has no join exchange/)
    assert.match(outcome.stderr, /ksctl proxy install --context host/)
    assert.match(
      outcome.stderr,
      /ksctl member join NAME --host-context host --member-context <member> --apply/,
    )
    assert.deepEqual(await snapshot('host'), before)
  })
})

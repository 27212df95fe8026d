import assert from 'node:assert/strict'

import MemberJoin from '../../../commands/member/join.js'
import MemberLeave from '../../../commands/member/leave.js'
import type {ErrorJson} from '../../../src/cli/base-command.js'
import {renderAgentManifest, renderKsctlAgentManifest} from '../../../src/kubesphere/agent-manifest.js'
import type {MemberLeaveResult} from '../../../src/kubesphere/member-leave.js'
import {AGENT_TOKEN, proxyCluster} from '../../fixtures/kubesphere/agent-cluster.js'
import {fingerprint} from '../../../src/redact.js'
import {LOAD_BALANCER_IP, secrets} from '../../../src/kubesphere-standin/fixtures.js'
import {planted, plantedClientKeyData, plantedClusterKubeconfig} from '../../fixtures/planted-credentials.js'
import {restPath} from '../../fixtures/kubesphere/rest-path.js'
import type {FakeApiServer} from '../../helpers/fake-apiserver.js'
import {seedFake, startFakeClusters, type FakeClusters} from '../../helpers/fake-clusters.js'
import {KubeSphereStandIn} from '../../helpers/kubesphere-standin.js'
import {runCommand} from '../../helpers/run-command.js'

const installerPath =
  '/apis/installer.kubesphere.io/v1alpha1/namespaces/kubesphere-system/clusterconfigurations/ks-installer'
const clusterPath = (name: string) => `/apis/cluster.kubesphere.io/v1alpha1/clusters/${name}`
const agentPath = '/apis/apps/v1/namespaces/kubesphere-system/deployments/cluster-agent'
const serviceAccountPath = '/api/v1/namespaces/kubesphere-system/serviceaccounts/tower'
const bindingPath = '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/tower'
const namespacePath = '/api/v1/namespaces/kubesphere-system'
const budgetPath = '/apis/policy/v1/namespaces/kubesphere-system/poddisruptionbudgets/cluster-agent'
const MEMBER_UID = 'member-kube-system-uid'
const ksctlAgentPath = '/apis/apps/v1/namespaces/kubesphere-system/deployments/ksctl-tower-agent'
const ksctlTokenPath = '/api/v1/namespaces/kubesphere-system/secrets/ksctl-tower-agent-token'
/** Another cluster's agent token, of the same form. */
const OTHER_TOKEN = '0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0'

interface InstallerSpec {
  authentication: {jwtSecret: string}
  multicluster: {clusterRole: string}
}

describe('ksctl member leave', () => {
  let clusters: FakeClusters
  let standIn: KubeSphereStandIn | undefined
  let ci: string | undefined

  beforeEach(async () => {
    clusters = await startFakeClusters()
    // Never a prompt, whether or not the tests run in a terminal.
    ci = process.env.CI
    process.env.CI = 'true'
  })

  afterEach(async () => {
    await standIn?.stop()
    standIn = undefined
    if (ci === undefined) delete process.env.CI
    else process.env.CI = ci
    await clusters.stop()
  })

  const withContexts = (argv: string[]) => [
    '--kubeconfig',
    clusters.kubeconfigPath,
    ...(argv.includes('--host-context') ? [] : ['--host-context', 'host']),
    ...(argv.includes('--member-context') ? [] : ['--member-context', 'member']),
    ...argv,
  ]
  const leave = (name: string, ...argv: string[]) =>
    runCommand<MemberLeaveResult>(MemberLeave, [name, ...withContexts(argv)])
  /** Joins member1 as ksctl does, with KubeSphere's controllers played by the stand-in, then stops them. */
  const join = async () => {
    standIn = new KubeSphereStandIn(clusters.kubeconfigPath, 'host', 'member').start()
    const joined = await runCommand(MemberJoin, [
      'member1',
      ...withContexts(['--apply', '--wait', '--timeout', '20s']),
    ])
    assert.equal(joined.exitCode, 0, joined.stderr)
    await standIn.stop()
  }
  const writeCounts = () => [clusters.host.writes().length, clusters.member.writes().length]
  const installerSpec = () => clusters.member.get(installerPath)?.spec as InstallerSpec
  const lines = (text: string) => text.split('\n')

  describe('KubeSphere 3.4', () => {
    beforeEach(() => {
      seedFake(clusters.host, 'ks34-host')
      seedFake(clusters.member, 'ks34-none')
    })

    it('deletes the Cluster, then the agent, then sets the role back to none, keeping the jwtSecret', async () => {
      await join()
      const token = (clusters.host.get(clusterPath('member1'))?.spec as {connection: {token: string}})
        .connection.token
      const clusterUid = clusters.host.get(clusterPath('member1'))?.metadata.uid
      const {stdout, stderr, exitCode, result} = await leave('member1', '--yes')
      assert.equal(exitCode, 0, stderr)

      assert.equal(clusters.member.get(agentPath), undefined)
      assert.equal(clusters.host.get(clusterPath('member1')), undefined)
      assert.equal(installerSpec().multicluster.clusterRole, 'none')
      assert.equal(installerSpec().authentication.jwtSecret, secrets.hostJwtSecret)
      assert.ok(clusters.member.get(namespacePath) !== undefined)

      assert.deepEqual(
        result?.changes.map((change) => [
          change.context,
          change.object.resource,
          change.changed,
          change.summary,
        ]),
        [
          ['host', 'clusters.cluster.kubesphere.io', true, 'delete Cluster member1'],
          ['member', 'deployments', true, 'delete Deployment cluster-agent'],
          ['member', 'poddisruptionbudgets', false, 'already removed'],
          [
            'member',
            'clusterconfigurations.installer.kubesphere.io',
            true,
            'set spec.multicluster.clusterRole back to none',
          ],
        ],
      )
      assert.deepEqual(
        lines(stderr).filter((line) => /^(host|member): /.test(line)),
        [
          'host: delete Cluster member1',
          'member: delete Deployment cluster-agent',
          'member: set spec.multicluster.clusterRole back to none',
        ],
        "the Cluster goes first, while KubeSphere's controller can still reach the member through the agent; the role last",
      )
      const clusterDelete = clusters.host
        .writes()
        .find((w) => w.method === 'DELETE' && w.path === clusterPath('member1'))
      assert.deepEqual(
        (clusterDelete?.body as {preconditions: {uid: string}} | undefined)?.preconditions.uid,
        clusterUid,
        'the Cluster is deleted only if it is still the one that was checked',
      )
      assert.equal(
        stdout,
        [
          'changed host: clusters.cluster.kubesphere.io member1 (delete Cluster member1)',
          'changed member: deployments kubesphere-system/cluster-agent (delete Deployment cluster-agent)',
          'unchanged member: poddisruptionbudgets kubesphere-system/cluster-agent (already removed)',
          'changed member: clusterconfigurations.installer.kubesphere.io kubesphere-system/ks-installer ' +
            '(set spec.multicluster.clusterRole back to none)',
          "note: the member keeps the host's jwtSecret (spec.authentication.jwtSecret of its ClusterConfiguration): " +
            'that is harmless once it has left, and ksctl leaves it alone so that the sessions signed with it stay valid',
          'note: ks-installer now re-runs on the member to apply the role; follow it with: ' +
            "kubectl --context member logs -n kubesphere-system -l 'app in (ks-install, ks-installer)' -f",
          'cluster "member1" was removed from the host of context "host"',
          '',
        ].join('\n'),
      )
      for (const output of [stdout, stderr]) {
        assert.ok(!output.includes(secrets.hostJwtSecret))
        assert.ok(!output.includes(token))
      }
    })

    it('finds everything already removed when run again, and writes nothing', async () => {
      await join()
      assert.equal((await leave('member1', '--yes')).exitCode, 0)
      const before = writeCounts()
      const {stdout, exitCode, result} = await leave('member1', '--yes')
      assert.equal(exitCode, 0)
      assert.deepEqual(writeCounts(), before)
      assert.ok(result?.changes.every((change) => !change.changed))
      assert.match(stdout, /^unchanged host: clusters\.cluster\.kubesphere\.io member1 \(already removed\)$/m)
      assert.match(stdout, /^unchanged member: .*ks-installer \(clusterRole is already none\)$/m)
      assert.match(
        stdout,
        /^cluster "member1" had already left the host of context "host": nothing to change$/m,
      )

      const withoutYes = await leave('member1')
      assert.equal(withoutYes.exitCode, 0, 'nothing to change needs no confirmation')
      assert.deepEqual(writeCounts(), before)
    })

    it('shows what it would delete as diffs with --dry-run, and changes nothing on either cluster', async () => {
      await join()
      const token = (clusters.host.get(clusterPath('member1'))?.spec as {connection: {token: string}})
        .connection.token
      const before = writeCounts()
      const {stdout, stderr, exitCode, result} = await leave('member1', '--dry-run')
      assert.equal(exitCode, 0, stderr)
      assert.deepEqual(writeCounts(), before)
      assert.ok(clusters.member.get(agentPath) !== undefined)
      assert.ok(clusters.host.get(clusterPath('member1')) !== undefined)
      assert.equal(installerSpec().multicluster.clusterRole, 'member')
      assert.equal(result?.dryRun, true)
      assert.match(
        stdout,
        /^would change member: deployments kubesphere-system\/cluster-agent \(delete Deployment cluster-agent\)$/m,
      )
      assert.match(
        stdout,
        /^would change host: clusters\.cluster\.kubesphere\.io member1 \(delete Cluster member1\)$/m,
      )
      assert.match(stdout, /^--- member: deployments kubesphere-system\/cluster-agent\tcurrent$/m)
      assert.match(stdout, /^- {2}name: cluster-agent$/m, 'a deletion is a diff to nothing')
      assert.match(stdout, /^- {4}type: proxy$/m)
      assert.match(stdout, /^- {4}clusterRole: member$/m)
      assert.match(stdout, /^\+ {4}clusterRole: none$/m)
      assert.match(stdout, /dry run: nothing was changed\n$/)
      assert.ok(!stdout.includes(token), 'the agent token is redacted in the diff')
      assert.ok(!stdout.includes(secrets.hostJwtSecret))
    })

    it("shows the Cluster's kubeconfig and token as fingerprints with --dry-run, in text and --json", async () => {
      await join()
      // What tower writes into the Cluster once the agent has connected.
      const cluster = clusters.host.get(clusterPath('member1'))
      const connection = (cluster?.spec as {connection: {token: string; kubeconfig?: string}}).connection
      connection.kubeconfig = plantedClusterKubeconfig()
      if (cluster !== undefined) clusters.host.put(clusterPath('member1'), cluster)
      const hidden = [connection.kubeconfig, connection.token, plantedClientKeyData(), planted.bearerToken]
      const text = await leave('member1', '--dry-run')
      const json = await leave('member1', '--dry-run', '--json')
      for (const {stdout, stderr, exitCode} of [text, json]) {
        assert.equal(exitCode, 0, stderr)
        for (const secret of hidden) assert.ok(!stdout.includes(secret) && !stderr.includes(secret), secret)
      }
      const kubeconfigLine = new RegExp(
        `^- +kubeconfig: <redacted ${fingerprint(connection.kubeconfig)}>$`,
        'm',
      )
      const tokenLine = new RegExp(`^- +token: <redacted ${fingerprint(connection.token)}>$`, 'm')
      const diffs = (JSON.parse(json.stdout) as MemberLeaveResult).changes.map((c) => c.diff).join('\n')
      for (const shown of [text.stdout, diffs]) {
        assert.match(shown, kubeconfigLine)
        assert.match(shown, tokenLine)
      }
    })

    it('keeps the agent until KubeSphere has finished deleting the Cluster, and says so when it takes too long', async () => {
      await join()
      const cluster = clusters.host.get(clusterPath('member1'))
      assert.ok(cluster !== undefined)
      clusters.host.put(clusterPath('member1'), {
        ...cluster,
        metadata: {
          ...cluster.metadata,
          deletionTimestamp: '2026-11-21T10:00:00Z',
          finalizers: ['finalizer.cluster.kubesphere.io'],
        },
      })
      const stuck = await leave('member1', '--yes', '--timeout', '1s')
      assert.equal(stuck.exitCode, 1)
      assert.match(
        stuck.stderr,
        /^error: cluster "member1" is still being deleted in context "host" after 1s/m,
      )
      assert.ok(
        clusters.member.get(agentPath) !== undefined,
        "the agent stays while KubeSphere's controller needs it",
      )
      assert.equal(
        clusters.host.writes().filter((w) => w.method === 'DELETE' && w.path === clusterPath('member1'))
          .length,
        0,
        'already being deleted',
      )

      clusters.host.delete(clusterPath('member1'))
      const {exitCode, result} = await leave('member1', '--yes')
      assert.equal(exitCode, 0)
      assert.equal(clusters.member.get(agentPath), undefined)
      const clusterChange = result?.changes.find((change) => change.context === 'host')
      assert.equal(clusterChange?.summary, 'already removed')
    })
  })

  it('removes the 4.1 agent, its ServiceAccount and binding and the host record, keeping the Namespace', async () => {
    seedFake(clusters.host, 'ks41-host', {proxyPublishAddress: 'http://127.0.0.3:30721'})
    seedFake(clusters.member, 'plain')
    await join()
    // What the 4.x host's controller writes on the member, and something else that must survive.
    const namespace = clusters.member.get(namespacePath)
    assert.ok(namespace !== undefined)
    clusters.member.put(namespacePath, {
      ...namespace,
      metadata: {
        ...namespace.metadata,
        annotations: {
          'cluster.kubesphere.io/name': 'member1',
          'cluster.kubesphere.io/host-cluster': 'host',
          'example.com/owner': 'platform-team',
        },
      },
    })
    const cluster = clusters.host.get(clusterPath('member1'))
    assert.ok(cluster !== undefined)
    clusters.host.put(clusterPath('member1'), {
      ...cluster,
      metadata: {...cluster.metadata, finalizers: ['finalizer.cluster.kubesphere.io']},
    })

    const {stdout, stderr, exitCode, result} = await leave('member1', '--yes')
    assert.equal(exitCode, 0, stderr)
    assert.equal(clusters.member.get(agentPath), undefined)
    assert.equal(clusters.member.get(serviceAccountPath), undefined)
    assert.equal(clusters.member.get(bindingPath), undefined)
    assert.equal(clusters.host.get(clusterPath('member1')), undefined)
    assert.deepEqual(clusters.member.get(namespacePath)?.metadata.annotations, {
      'example.com/owner': 'platform-team',
    })
    assert.deepEqual(
      result?.changes.map((change) => [change.object.resource, change.object.name, change.changed]),
      [
        ['clusters.cluster.kubesphere.io', 'member1', true],
        ['deployments', 'cluster-agent', true],
        ['poddisruptionbudgets', 'cluster-agent', false],
        ['clusterrolebindings', 'tower', true],
        ['serviceaccounts', 'tower', true],
        ['namespaces', 'kubesphere-system', true],
      ],
    )
    assert.equal(
      clusters.member.writes().filter((w) => w.method === 'DELETE' && w.path === namespacePath).length,
      0,
    )
    const probe = clusters.host.requests.find(
      (request) =>
        request.method === 'PATCH' &&
        request.path === clusterPath('member1') &&
        request.contentType === 'application/json-patch+json',
    )
    assert.deepEqual(
      probe?.body,
      [
        {op: 'test', path: '/metadata/finalizers', value: ['finalizer.cluster.kubesphere.io']},
        {op: 'remove', path: '/metadata/finalizers'},
      ],
      "before any change, the finalizer's removal is sent as a dry run: KubeSphere must be able to finish",
    )
    assert.equal(clusters.host.get(clusterPath('member1')), undefined)
    assert.doesNotMatch(stdout, /^note: KubeSphere's controller/m)
  })

  it('deletes the PodDisruptionBudget of an agent with several replicas', async () => {
    seedFake(clusters.host, 'ks34-host')
    seedFake(clusters.member, 'ks34-member')
    putJoinedMember(clusters, {replicas: 2})
    assert.ok(clusters.member.get(budgetPath) !== undefined)
    const {exitCode} = await leave('member1', '--yes')
    assert.equal(exitCode, 0)
    assert.equal(clusters.member.get(budgetPath), undefined)
  })

  describe("ksctl's agent", () => {
    beforeEach(() => {
      seedFake(clusters.host, 'ks34-host')
      seedFake(clusters.member, 'ks34-member')
    })

    it('removes everything its manifest made, Deployment first, and leaves alone what only has its name', async () => {
      putJoinedMember(clusters, {runtime: 'ksctl', replicas: 2})
      // Someone's own ClusterRole of the same name, without ksctl's labels.
      const impersonatorPath =
        '/apis/rbac.authorization.k8s.io/v1/clusterroles/ksctl-tower-agent-impersonator'
      clusters.member.put(impersonatorPath, {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'ClusterRole',
        metadata: {name: 'ksctl-tower-agent-impersonator', labels: {team: 'platform'}},
        rules: [],
      })
      const {stdout, stderr, exitCode, result} = await leave('member1', '--yes')
      assert.equal(exitCode, 0, stderr)
      assert.deepEqual(
        result?.changes.map((change) => [change.object.resource, change.object.name, change.changed]),
        [
          ['clusters.cluster.kubesphere.io', 'member1', true],
          ['deployments', 'ksctl-tower-agent', true],
          ['poddisruptionbudgets', 'ksctl-tower-agent', true],
          ['configmaps', 'ksctl-tower-agent-proxy-ca', true],
          ['secrets', 'ksctl-tower-agent-token', true],
          ['rolebindings', 'ksctl-tower-agent-token-rotation', true],
          ['roles', 'ksctl-tower-agent-token-rotation', true],
          ['clusterrolebindings', 'ksctl-kubesphere-identity', true],
          ['clusterrolebindings', 'ksctl-tower-agent-impersonator', true],
          ['serviceaccounts', 'ksctl-tower-agent', true],
          ['clusterconfigurations.installer.kubesphere.io', 'ks-installer', true],
        ],
        "ksctl's agent only: no step for Tower's cluster-agent",
      )
      for (const object of ksctlAgentObjects(2)) {
        if (object.kind === 'Namespace') continue
        const left = clusters.member.get(restPath(object))
        if (object.metadata.name === 'ksctl-tower-agent-impersonator' && object.kind === 'ClusterRole') {
          assert.deepEqual(left?.metadata.labels, {team: 'platform'}, "not ksctl's: left alone")
        } else {
          assert.equal(left, undefined, `${object.kind} ${object.metadata.name}`)
        }
      }
      assert.ok(clusters.member.get(namespacePath) !== undefined)
      assert.match(
        stdout,
        /^note: clusterroles ksctl-tower-agent-impersonator in context "member" does not carry the labels of ksctl's agent \(app\.kubernetes\.io\/name=ksctl-tower-agent, app\.kubernetes\.io\/managed-by=ksctl\), so it is not ksctl's: left alone$/m,
      )
      for (const output of [stdout, stderr]) assert.ok(!output.includes(AGENT_TOKEN))
    })

    it('removes both agents while a runtime migration is under way, both Deployments first', async () => {
      putJoinedMember(clusters, {runtime: 'ksctl'})
      putAgent(clusters.member, 'member1')
      const {stderr, exitCode} = await leave('member1', '--yes')
      assert.equal(exitCode, 0, stderr)
      assert.deepEqual(
        lines(stderr)
          .filter((line) => /^member: delete /.test(line))
          .slice(0, 2),
        ['member: delete Deployment cluster-agent', 'member: delete Deployment ksctl-tower-agent'],
      )
      assert.equal(clusters.member.get(agentPath), undefined)
      assert.equal(clusters.member.get(ksctlAgentPath), undefined)
      assert.equal(clusters.member.get(ksctlTokenPath), undefined)
    })

    it('takes a Cluster without member UID as this member when the token Secret holds its token', async () => {
      putKsctlAgent(clusters.member, 'member1', AGENT_TOKEN)
      clusters.host.put(clusterPath('member1'), proxyCluster('member1'))
      const {stderr, exitCode} = await leave('member1', '--yes')
      assert.equal(exitCode, 0, stderr)
      assert.equal(clusters.host.get(clusterPath('member1')), undefined)
      assert.equal(clusters.member.get(ksctlAgentPath), undefined)
      assert.ok(!stderr.includes(AGENT_TOKEN))
    })

    it('shows the token Secret going with --dry-run, its token only as a fingerprint, in text and --json', async () => {
      putJoinedMember(clusters, {runtime: 'ksctl'})
      const encoded = Buffer.from(AGENT_TOKEN).toString('base64')
      const text = await leave('member1', '--dry-run')
      const json = await leave('member1', '--dry-run', '--json')
      for (const {stdout, stderr, exitCode} of [text, json]) {
        assert.equal(exitCode, 0, stderr)
        for (const secret of [AGENT_TOKEN, encoded]) {
          assert.ok(!stdout.includes(secret) && !stderr.includes(secret), secret)
        }
      }
      assert.match(
        text.stdout,
        /^would change member: secrets kubesphere-system\/ksctl-tower-agent-token \(delete Secret ksctl-tower-agent-token\)$/m,
      )
      const secretDiff = (JSON.parse(json.stdout) as MemberLeaveResult).changes.find(
        (change) => change.object.resource === 'secrets',
      )?.diff
      assert.match(secretDiff ?? '', /^- {2}token: <redacted sha256:[0-9a-f]{8}>$/m)
      assert.ok(clusters.member.get(ksctlTokenPath) !== undefined)
    })
  })

  describe('an unreachable member', () => {
    beforeEach(async () => {
      seedFake(clusters.host, 'ks34-host')
      seedFake(clusters.member, 'ks34-member')
      putJoinedMember(clusters)
      await clusters.member.stop()
    })

    it('is an error without --force, suggesting it, and nothing changes', async () => {
      const {stderr, exitCode} = await leave('member1', '--yes')
      assert.equal(exitCode, 1)
      assert.match(
        stderr,
        /cannot reach the API server of context "member" at .* \(ECONNREFUSED\): nothing was changed/,
      )
      assert.match(
        stderr,
        /→ if the member is gone for good, remove the host side only: ksctl member leave member1 --host-context host --member-context member --force/,
      )
      assert.deepEqual(clusters.host.writes(), [])
      assert.ok(clusters.host.get(clusterPath('member1')) !== undefined)
    })

    it('with --force, removes the host side only and says what the member keeps', async () => {
      const {stdout, stderr, exitCode, result} = await leave('member1', '--yes', '--force')
      assert.equal(exitCode, 0, stderr)
      assert.equal(clusters.host.get(clusterPath('member1')), undefined)
      assert.deepEqual(
        result?.changes.map((change) => [change.context, change.summary, change.changed]),
        [['host', 'delete Cluster member1', true]],
      )
      assert.match(
        stderr,
        /^warn: cannot reach the API server of context "member".*--force: removing the host side only$/m,
      )
      assert.match(
        stdout,
        /^note: the member of context "member" could not be reached, so nothing was removed there: deployments kubesphere-system\/cluster-agent, poddisruptionbudgets kubesphere-system\/cluster-agent, its ClusterConfiguration's clusterRole member stay .*once it is reachable, remove them with: ksctl member leave member1 --host-context host --member-context member$/m,
      )
    })
  })

  it('needs both contexts', async () => {
    seedFake(clusters.host, 'ks34-host')
    const {stderr, exitCode} = await runCommand(MemberLeave, [
      'member1',
      '--kubeconfig',
      clusters.kubeconfigPath,
      '--host-context',
      'host',
      '--yes',
    ])
    assert.equal(exitCode, 2)
    assert.match(stderr, /Missing required flag member-context/)
    assert.deepEqual(clusters.host.requests, [])
  })

  it('reports a refusal as a JSON error with --json', async () => {
    seedFake(clusters.host, 'ks34-host')
    seedFake(clusters.member, 'ks34-none')
    const {stdout, exitCode} = await leave('host', '--yes', '--json')
    assert.equal(exitCode, 1)
    const {error} = JSON.parse(stdout) as ErrorJson
    assert.equal(error.code, 'PRECONDITION_FAILED')
    assert.equal(error.context, 'host')
  })

  describe('refuses bad input and leaves both clusters unchanged', () => {
    type Setup = (clusters: FakeClusters) => void
    const joined: Setup = (c) => {
      seedFake(c.host, 'ks34-host')
      seedFake(c.member, 'ks34-member')
      putJoinedMember(c)
    }
    const cases: [string, string, string[], Setup, number, RegExp][] = [
      [
        'no terminal to confirm on, and no --yes',
        'member1',
        [],
        joined,
        2,
        /confirmation needed: remove cluster "member1": delete Cluster member1 in context "host", delete Deployment cluster-agent in context "member", set spec\.multicluster\.clusterRole back to none in context "member"\?\n.*→ pass --yes to go ahead without asking/,
      ],
      ['an invalid name', 'Member_1', ['--yes'], joined, 2, /NAME "Member_1" is not a cluster name/],
      [
        "the host's own Cluster",
        'host',
        ['--yes'],
        joined,
        1,
        /cluster "host" is the host cluster itself in context "host" \(label cluster-role\.kubesphere\.io\/host\); member leave removes members only: nothing was changed/,
      ],
      [
        'another Cluster labelled as the host',
        'main',
        ['--yes'],
        (c) => {
          joined(c)
          c.host.put(clusterPath('main'), {
            apiVersion: 'cluster.kubesphere.io/v1alpha1',
            kind: 'Cluster',
            metadata: {name: 'main', labels: {'cluster-role.kubesphere.io/host': ''}},
            spec: {connection: {type: 'direct'}},
          })
        },
        1,
        /cluster "main" is the host cluster itself/,
      ],
      [
        'a Cluster that stands for another member',
        'member1',
        ['--yes'],
        (c) => {
          seedFake(c.host, 'ks34-host')
          seedFake(c.member, 'ks34-member')
          c.host.put(clusterPath('member1'), {
            ...proxyCluster('member1'),
            status: {uid: 'some-other-cluster-uid'},
          })
        },
        1,
        /cluster "member1" in context "host" stands for another cluster \(kube-system UID some-other-cluster-uid\), not for the member of context "member" \(kube-system UID member-kube-system-uid\): nothing was changed/,
      ],
      [
        'a member whose agent connects as another cluster',
        'member1',
        ['--yes'],
        (c) => {
          joined(c)
          putAgent(c.member, 'member7')
        },
        1,
        /the member of context "member" runs the agent of cluster "member7", not "member1": nothing was changed/,
      ],
      [
        'a Cluster with no member UID, and no agent with its token on the member',
        'member1',
        ['--yes'],
        (c) => {
          seedFake(c.host, 'ks34-host')
          seedFake(c.member, 'ks34-member')
          c.host.put(clusterPath('member1'), proxyCluster('member1'))
        },
        1,
        /cluster "member1" in context "host" records no member UID, and the member of context "member" runs no agent with its token/,
      ],
      [
        "a Cluster with no member UID, and ksctl's agent with another cluster's token",
        'member1',
        ['--yes'],
        (c) => {
          seedFake(c.host, 'ks34-host')
          seedFake(c.member, 'ks34-member')
          putKsctlAgent(c.member, 'member1', OTHER_TOKEN)
          c.host.put(clusterPath('member1'), proxyCluster('member1'))
        },
        1,
        /cluster "member1" in context "host" records no member UID, and the member of context "member" runs no agent with its token/,
      ],
      [
        "a member whose ksctl's agent connects as another cluster",
        'member1',
        ['--yes'],
        (c) => {
          joined(c)
          c.member.delete(agentPath)
          putKsctlAgent(c.member, 'member7', AGENT_TOKEN)
        },
        1,
        /the member of context "member" runs ksctl's agent of cluster "member7", not "member1": nothing was changed/,
      ],
      [
        'the same cluster as host and member',
        'member1',
        ['--yes', '--member-context', 'host'],
        joined,
        1,
        /--host-context "host" and --member-context "host" are the same cluster/,
      ],
      [
        'a host context that is not a host',
        'member1',
        ['--yes', '--host-context', 'member'],
        joined,
        1,
        /context "member" is not a KubeSphere host \(role: member\)/,
      ],
    ]
    for (const [label, name, argv, setup, exit, message] of cases) {
      it(label, async () => {
        setup(clusters)
        const {stdout, stderr, exitCode} = await leave(name, ...argv)
        assert.equal(exitCode, exit, stderr)
        assert.match(stderr, message)
        assert.equal(stdout, '')
        assert.ok(![OTHER_TOKEN, AGENT_TOKEN].some((token) => stderr.includes(token)))
        assert.deepEqual(clusters.host.writes(), [])
        assert.deepEqual(clusters.member.writes(), [])
      })
    }
  })
})

/** The agent objects `ksctl member join --apply` puts on a 3.x member (with a PodDisruptionBudget above 1 replica). */
function putAgent(fake: FakeApiServer, clusterName: string, replicas = 1): void {
  const objects = renderAgentManifest({
    edition: '3.x',
    clusterName,
    token: AGENT_TOKEN,
    proxyAddress: `http://${LOAD_BALANCER_IP}:8080`,
    replicas,
  })
  for (const object of objects) fake.put(object.kind === 'Deployment' ? agentPath : budgetPath, object)
}

/** What `ksctl member join --runtime ksctl` renders for a member (its token in a Secret, the proxy CA in a ConfigMap). */
function ksctlAgentObjects(replicas = 1, clusterName = 'member1', token = AGENT_TOKEN) {
  return renderKsctlAgentManifest({
    clusterName,
    token,
    proxyAddress: `wss://${LOAD_BALANCER_IP}:8080`,
    trust: {caPem: '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n'},
    replicas,
  })
}

/** ksctl's agent on a member, as `ksctl member join --runtime ksctl --apply` leaves it (the Namespace is there). */
function putKsctlAgent(fake: FakeApiServer, clusterName: string, token: string, replicas = 1): void {
  for (const object of ksctlAgentObjects(replicas, clusterName, token)) {
    if (object.kind !== 'Namespace') fake.put(restPath(object), object)
  }
}

/** A 3.4 member as a finished join leaves it, written straight into the fakes. */
function putJoinedMember(
  clusters: FakeClusters,
  options: {replicas?: number; runtime?: 'tower' | 'ksctl'} = {},
): void {
  if (options.runtime === 'ksctl') putKsctlAgent(clusters.member, 'member1', AGENT_TOKEN, options.replicas)
  else putAgent(clusters.member, 'member1', options.replicas)
  const cluster = proxyCluster('member1')
  clusters.host.put(clusterPath('member1'), {
    ...cluster,
    metadata: {...cluster.metadata, annotations: {'ksctl.io/member-uid': MEMBER_UID}},
    status: {
      uid: MEMBER_UID,
      conditions: [{type: 'Ready', status: 'True', lastTransitionTime: '2026-11-21T10:00:00Z'}],
    },
  })
}

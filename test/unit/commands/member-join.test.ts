import assert from 'node:assert/strict'
import {chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {loadAll} from 'js-yaml'

import MemberJoin, {type MemberJoinOutput} from '../../../commands/member/join.js'
import {fingerprint} from '../../../src/redact.js'
import {secrets, type K8sObject} from '../../../src/kubesphere-standin/fixtures.js'
import {restPath} from '../../fixtures/kubesphere/rest-path.js'
import {planted, plantedClientKeyData, plantedClusterKubeconfig} from '../../fixtures/planted-credentials.js'
import {seedFake, startFakeClusters, type FakeClusters} from '../../helpers/fake-clusters.js'
import {until} from '../../helpers/ksctl-running.js'
import {KubeSphereStandIn} from '../../helpers/kubesphere-standin.js'
import {runCommand} from '../../helpers/run-command.js'

const installerPath =
  '/apis/installer.kubesphere.io/v1alpha1/namespaces/kubesphere-system/clusterconfigurations/ks-installer'
const clusterPath = (name: string) => `/apis/cluster.kubesphere.io/v1alpha1/clusters/${name}`
const agentPath = '/apis/apps/v1/namespaces/kubesphere-system/deployments/cluster-agent'

interface AgentDeployment {
  spec: {template: {spec: {containers: {command: string[]; image: string}[]}}}
}

describe('ksctl member join', () => {
  let clusters: FakeClusters
  let standIn: KubeSphereStandIn | undefined
  let scratch: string

  beforeEach(async () => {
    clusters = await startFakeClusters()
    scratch = mkdtempSync(join(tmpdir(), 'ksctl-join-'))
  })

  afterEach(async () => {
    await standIn?.stop()
    standIn = undefined
    await clusters.stop()
    rmSync(scratch, {recursive: true, force: true})
  })

  const joinMember = (name: string, ...argv: string[]) =>
    runCommand<MemberJoinOutput>(MemberJoin, [
      name,
      '--kubeconfig',
      clusters.kubeconfigPath,
      ...(argv.includes('--host-context') ? [] : ['--host-context', 'host']),
      ...(argv.includes('--member-context') ? [] : ['--member-context', 'member']),
      ...argv,
    ])
  const startStandIn = (behaviour = {}) => {
    standIn = new KubeSphereStandIn(clusters.kubeconfigPath, 'host', 'member', behaviour).start()
  }
  const finalState = () => {
    const cluster = clusters.host.get(clusterPath('member1'))
    const agent = clusters.member.get(agentPath) as unknown as AgentDeployment | undefined
    return {
      memberSpec: clusters.member.get(installerPath)?.spec,
      cluster: {
        metadata: {labels: cluster?.metadata.labels, annotations: cluster?.metadata.annotations},
        spec: {...(cluster?.spec as object), connection: 'checked apart'},
      },
      agentArgs: agent?.spec.template.spec.containers[0]?.command.filter(
        (arg) => !arg.startsWith('--token='),
      ),
    }
  }

  describe('KubeSphere 3.4', () => {
    beforeEach(() => {
      seedFake(clusters.host, 'ks34-host')
      seedFake(clusters.member, 'ks34-none')
    })

    it('copies the jwtSecret, registers the Cluster, applies the agent and waits until Ready', async () => {
      startStandIn()
      const {stdout, stderr, exitCode, result} = await joinMember(
        'member1',
        '--apply',
        '--wait',
        '--timeout',
        '20s',
        '--label',
        'cluster.kubesphere.io/group=production',
        '--description',
        'Beijing IDC',
      )
      assert.equal(exitCode, 0, stderr)
      assert.equal(result?.ready, true)
      const memberSpec = clusters.member.get(installerPath)?.spec as {
        authentication: {jwtSecret: string}
        multicluster: {clusterRole: string}
      }
      assert.equal(memberSpec.authentication.jwtSecret, secrets.hostJwtSecret)
      assert.equal(memberSpec.multicluster.clusterRole, 'member')
      const cluster = clusters.host.get(clusterPath('member1'))
      assert.deepEqual(cluster?.metadata.labels, {'cluster.kubesphere.io/group': 'production'})
      assert.equal(
        (cluster?.metadata.annotations as Record<string, string>)['kubesphere.io/description'],
        'Beijing IDC',
      )
      assert.equal(
        (cluster?.metadata.annotations as Record<string, string>)['ksctl.io/member-uid'],
        'member-kube-system-uid',
      )
      const spec = cluster?.spec as {joinFederation: boolean; connection: {type: string; token: string}}
      assert.equal(spec.joinFederation, true)
      assert.equal(spec.connection.type, 'proxy')
      const agent = clusters.member.get(agentPath) as unknown as AgentDeployment
      assert.ok(agent.spec.template.spec.containers[0]?.command.includes(`--token=${spec.connection.token}`))
      assert.ok(
        agent.spec.template.spec.containers[0]?.command.includes('--proxy-server=http://127.0.0.2:8080'),
      )
      assert.match(stderr, /^host: cluster "member1" Initialized; waiting for AgentAvailable$/m)
      assert.match(stderr, /^host: cluster "member1" is Ready$/m)
      assert.match(stdout, /cluster "member1" is Ready/)
      for (const output of [stdout, stderr]) {
        assert.ok(!output.includes(secrets.hostJwtSecret))
        assert.ok(!output.includes(spec.connection.token))
      }
    })

    it('changes nothing on either cluster when run again after success', async () => {
      startStandIn()
      assert.equal((await joinMember('member1', '--apply', '--wait', '--timeout', '20s')).exitCode, 0)
      const writesBefore = [clusters.host.writes().length, clusters.member.writes().length]
      await standIn?.stop()
      const {exitCode, result} = await joinMember('member1', '--apply')
      assert.equal(exitCode, 0)
      assert.ok(
        result?.changes.every((change) => !change.changed),
        JSON.stringify(result?.changes.filter((c) => c.changed)),
      )
      const patches = [
        clusters.host.writes().length - writesBefore[0]!,
        clusters.member.writes().length - writesBefore[1]!,
      ]
      assert.deepEqual(
        [...clusters.host.writes(), ...clusters.member.writes()]
          .slice(-(patches[0]! + patches[1]!))
          .map((w) => w.method),
        Array<string>(patches[0]! + patches[1]!).fill('PATCH'),
        'only server-side applies, which change nothing',
      )
    })

    it('shows every change as a diff with --dry-run and changes nothing on either cluster', async () => {
      const {stdout, exitCode} = await joinMember('member1', '--apply', '--dry-run')
      assert.equal(exitCode, 0, stdout)
      assert.deepEqual(
        clusters.host.writes().filter((w) => !w.path.includes('dryRun')).length,
        clusters.host.writes().length,
      )
      assert.equal(clusters.host.get(clusterPath('member1')), undefined)
      assert.equal(clusters.member.get(agentPath), undefined)
      assert.equal(
        (clusters.member.get(installerPath)?.spec as {multicluster: {clusterRole: string}}).multicluster
          .clusterRole,
        'none',
      )
      assert.match(
        stdout,
        /^would change member: clusterconfigurations\.installer\.kubesphere\.io kubesphere-system\/ks-installer/m,
      )
      assert.match(stdout, /^would change host: clusters\.cluster\.kubesphere\.io member1/m)
      assert.match(stdout, /^\+ {4}type: proxy$/m)
      assert.match(stdout, /--token=<issued by the proxy when the Cluster is created>/)
      assert.ok(!stdout.includes(secrets.hostJwtSecret), 'the jwtSecret is redacted in the diff')
      assert.match(stdout, /jwtSecret: <redacted sha256:[0-9a-f]{8}>/)
    })

    it('continues after a failure at each step and ends as an uninterrupted run', async () => {
      startStandIn()
      assert.equal((await joinMember('member1', '--apply', '--wait', '--timeout', '20s')).exitCode, 0)
      const uninterrupted = finalState()
      const failures: [string, () => void][] = [
        [
          'the member edit',
          () => clusters.member.failNext('PUT', /ks-installer$/, 500, 'etcdserver: request timed out'),
        ],
        [
          'the Cluster',
          () => clusters.host.failNext('PATCH', /clusters\/member1$/, 500, 'etcdserver: leader changed'),
        ],
        [
          'the agent',
          () =>
            clusters.member.failNext(
              'PATCH',
              /deployments\/cluster-agent$/,
              500,
              'etcdserver: request timed out',
            ),
        ],
      ]
      for (const [step, fail] of failures) {
        await clusters.stop()
        clusters = await startFakeClusters()
        seedFake(clusters.host, 'ks34-host')
        seedFake(clusters.member, 'ks34-none')
        await standIn?.stop()
        startStandIn()
        fail()
        const failed = await joinMember('member1', '--apply', '--wait', '--timeout', '20s')
        assert.equal(failed.exitCode, 1, `a failing ${step} fails the command`)
        const rerun = await joinMember('member1', '--apply', '--wait', '--timeout', '20s')
        assert.equal(rerun.exitCode, 0, `${step}: ${rerun.stderr}`)
        assert.deepEqual(finalState(), uninterrupted, step)
      }
    })

    it('writes the agent manifest to a private file, and its notes to stderr', async () => {
      startStandIn()
      const file = join(scratch, 'agent.yaml')
      const {stdout, stderr, exitCode, result} = await joinMember('member1', '--output', file)
      assert.equal(exitCode, 0)
      assert.equal(statSync(file).mode & 0o777, 0o600)
      assert.match(readFileSync(file, 'utf8'), /--token=[0-9a-f]{64}/)
      assert.match(stderr, new RegExp(`^wrote the agent manifest to ${file}, readable only by you`, 'm'))
      assert.match(
        stderr,
        new RegExp(`^apply it on the member: kubectl --context member create -f ${file}$`, 'm'),
      )
      assert.doesNotMatch(stdout, /wrote|apply it/)
      assert.equal(result?.agentFile, file)
      assert.equal(result?.agentManifest, undefined)
      assert.equal(clusters.member.get(agentPath), undefined)
    })

    it('makes an existing --output file private before it writes the token into it', async () => {
      startStandIn()
      const file = join(scratch, 'agent.yaml')
      writeFileSync(file, 'an older manifest\n')
      chmodSync(file, 0o644)
      const {exitCode, stderr} = await joinMember('member1', '--output', file)
      assert.equal(exitCode, 0, stderr)
      assert.equal(statSync(file).mode & 0o777, 0o600)
      assert.match(readFileSync(file, 'utf8'), /--token=[0-9a-f]{64}/)
    })

    it('refuses an --output path it cannot write before it changes anything, with a usage error', async () => {
      startStandIn()
      const aFile = join(scratch, 'a-file')
      writeFileSync(aFile, '')
      const cases: [string, string, RegExp][] = [
        ['a missing directory', join(scratch, 'missing', 'agent.yaml'), /directory .*missing does not exist/],
        ['a directory', scratch, /it is a directory/],
        ['a path under a file', join(aFile, 'agent.yaml'), /a-file is not a directory/],
      ]
      for (const [what, path, reason] of cases) {
        const {exitCode, stderr} = await joinMember('member1', '--output', path)
        assert.equal(exitCode, 2, `${what}: ${stderr}`)
        assert.match(stderr, new RegExp(`cannot write --output ${path}: `), what)
        assert.match(stderr, reason, what)
        assert.doesNotMatch(stderr, /unexpected error/, what)
      }
      assert.deepEqual([clusters.host.writes(), clusters.member.writes()], [[], []])
    })

    it("shows the agent of a re-run's dry run as the real run leaves it: unchanged", async () => {
      startStandIn()
      assert.equal((await joinMember('member1', '--apply', '--wait', '--timeout', '20s')).exitCode, 0)
      await standIn?.stop()
      const {stdout, exitCode, result} = await joinMember('member1', '--apply', '--dry-run')
      assert.equal(exitCode, 0)
      assert.deepEqual(
        result?.changes.filter((change) => change.changed).map((change) => change.diff),
        [],
      )
      assert.doesNotMatch(stdout, /issued by the proxy/)
    })

    it("shows the Cluster's kubeconfig and token as fingerprints in every diff and --json document", async () => {
      startStandIn()
      assert.equal((await joinMember('member1', '--apply', '--wait', '--timeout', '20s')).exitCode, 0)
      await standIn?.stop()
      // What tower writes into the Cluster once the agent has connected.
      const cluster = clusters.host.get(clusterPath('member1'))
      const connection = (cluster?.spec as {connection: {token: string; kubeconfig?: string}}).connection
      connection.kubeconfig = plantedClusterKubeconfig()
      if (cluster !== undefined) clusters.host.put(clusterPath('member1'), cluster)
      const hidden = [connection.kubeconfig, connection.token, plantedClientKeyData(), planted.bearerToken]
      const file = join(scratch, 'agent.yaml')
      const runs = [
        ['--apply', '--dry-run', '--label', 'tier=gold'],
        ['--apply', '--dry-run', '--json', '--label', 'tier=gold'],
        ['--output', file, '--json', '--label', 'tier=gold'],
      ]
      for (const argv of runs) {
        const {stdout, stderr, exitCode} = await joinMember('member1', ...argv)
        assert.equal(exitCode, 0, stderr)
        for (const secret of hidden) {
          assert.ok(!stdout.includes(secret) && !stderr.includes(secret), `${argv.join(' ')}: ${secret}`)
        }
        const shown = argv.includes('--json')
          ? (JSON.parse(stdout) as MemberJoinOutput).changes.map((change) => change.diff).join('\n')
          : stdout
        assert.match(
          shown,
          new RegExp(`^ +kubeconfig: <redacted ${fingerprint(connection.kubeconfig)}>$`, 'm'),
        )
        assert.match(shown, new RegExp(`^\\+ +tier: gold$`, 'm'))
      }
    })

    it('with --wait and --output, tells the user to apply the file now and follows the Cluster until Ready', async () => {
      startStandIn()
      const file = join(scratch, 'agent.yaml')
      const running = joinMember('member1', '--output', file, '--wait', '--timeout', '20s')
      // The user applies the file while ksctl waits, as a kubectl apply would.
      await until(
        () => existsSync(file) && readFileSync(file, 'utf8').includes('kind: Deployment'),
        'the manifest',
      )
      for (const object of loadAll(readFileSync(file, 'utf8')) as K8sObject[]) {
        clusters.member.put(restPath(object), object)
      }
      const {stdout, stderr, exitCode, result} = await running
      assert.equal(exitCode, 0, stderr)
      assert.equal(result?.ready, true)
      assert.equal(result?.agentFile, file)
      const told = stderr.indexOf(
        'waiting for cluster "member1" to become Ready: apply the agent on the member now',
      )
      assert.ok(told >= 0, stderr)
      assert.ok(told < stderr.indexOf('host: cluster "member1" is Ready'), 'told before the wait ends')
      assert.match(stdout, /cluster "member1" is Ready/)
    })

    it('prints the agent manifest, token included, to stdout when it is the output', async () => {
      startStandIn()
      const {stdout, stderr, exitCode} = await joinMember('member1')
      assert.equal(exitCode, 0, stderr)
      const token = (clusters.host.get(clusterPath('member1'))?.spec as {connection: {token: string}})
        .connection.token
      assert.match(stdout, new RegExp(`- --token=${token}$`, 'm'))
      const objects = loadAll(stdout) as K8sObject[]
      assert.deepEqual(
        objects.map((object) => object.kind),
        ['Deployment'],
        'stdout is the manifest alone, for kubectl apply -f -',
      )
      assert.match(stderr, /^changed host: clusters\.cluster\.kubesphere\.io member1/m)
      assert.ok(!stderr.includes(token))
      assert.match(stderr, /apply it on the member: kubectl --context member create -f <this output>/)
    })

    it('says what doctor found when the agent never connects', async () => {
      startStandIn({agentConnects: false})
      const {stderr, exitCode} = await joinMember('member1', '--apply', '--wait', '--timeout', '2s')
      assert.equal(exitCode, 1)
      assert.match(stderr, /cluster "member1" did not become Ready within 2s/)
      assert.match(stderr, /doctor found: .*deployment kubesphere-system\/cluster-agent is not available/)
    })
  })

  it('applies the 4.x agent (namespace, service account, binding, deployment) to a plain member', async () => {
    seedFake(clusters.host, 'ks41-host', {proxyPublishAddress: 'http://127.0.0.3:30721'})
    seedFake(clusters.member, 'plain')
    startStandIn()
    const {exitCode, stderr, result} = await joinMember('member1', '--apply', '--wait', '--timeout', '20s')
    assert.equal(exitCode, 0, stderr)
    assert.equal(result?.edition, '4.x')
    assert.ok(clusters.member.get('/api/v1/namespaces/kubesphere-system') !== undefined)
    assert.ok(clusters.member.get('/api/v1/namespaces/kubesphere-system/serviceaccounts/tower') !== undefined)
    assert.ok(
      clusters.member.get('/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/tower') !== undefined,
    )
    assert.ok(clusters.member.get(agentPath) !== undefined)
  })

  describe('refuses bad input and leaves both clusters unchanged', () => {
    type Setup = (clusters: FakeClusters) => void
    const standard: Setup = (c) => {
      seedFake(c.host, 'ks34-host')
      seedFake(c.member, 'ks34-none')
    }
    const cases: [string, string, string[], Setup, number, RegExp][] = [
      [
        'an invalid name',
        'Member_1',
        ['--apply'],
        standard,
        2,
        /NAME "Member_1" is not valid for a proxy-connected cluster/,
      ],
      [
        'a name over 60 characters',
        'm'.repeat(61),
        ['--apply'],
        standard,
        2,
        /at most 60 characters \(the proxy creates a Service named mc-NAME\)/,
      ],
      [
        'a malformed label',
        'member1',
        ['--label', 'group'],
        standard,
        2,
        /--label "group" is not a valid label/,
      ],
      [
        'a label value with spaces',
        'member1',
        ['--label', 'group=a b'],
        standard,
        2,
        /--label "group=a b" is not a valid label/,
      ],
      [
        '--apply with --output',
        'member1',
        ['--apply', '--output', '/tmp/x.yaml'],
        standard,
        2,
        /--output=\/tmp\/x\.yaml cannot also be provided when using --apply/,
      ],
      [
        'no replicas',
        'member1',
        ['--replicas', '0'],
        standard,
        2,
        /Expected an integer greater than or equal to 1/,
      ],
      [
        'a malformed --proxy-address',
        'member1',
        ['--proxy-address', 'tower:8080'],
        standard,
        2,
        /--proxy-address "tower:8080" must be http\(s\):\/\/host:port/,
      ],
      [
        'an unknown member context',
        'member1',
        ['--member-context', 'nowhere'],
        standard,
        2,
        /context "nowhere" not found/,
      ],
      [
        'the same cluster as host and member',
        'member1',
        [],
        (c) => {
          standard(c)
          c.member.put('/api/v1/namespaces/kube-system', {
            apiVersion: 'v1',
            kind: 'Namespace',
            metadata: {name: 'kube-system', uid: 'host-kube-system-uid'},
          })
        },
        1,
        /"host" and --member-context "member" are the same cluster/,
      ],
      [
        'a host that is not a host',
        'member1',
        [],
        (c) => {
          seedFake(c.host, 'ks34-none')
          seedFake(c.member, 'ks34-none')
        },
        1,
        /context "host" is not a KubeSphere host \(role: none\)/,
      ],
      [
        'a host without a proxy address',
        'member1',
        [],
        (c) => {
          seedFake(c.host, 'ks41-host')
          seedFake(c.member, 'plain')
        },
        1,
        /has no proxy address[\s\S]*ksctl proxy set-address/,
      ],
      [
        'a member that is a host',
        'member1',
        [],
        (c) => {
          seedFake(c.host, 'ks34-host')
          seedFake(c.member, 'ks34-host')
        },
        1,
        /context "member" is a KubeSphere host; a host cannot join another host/,
      ],
      [
        'a 3.x host and a member without KubeSphere',
        'member1',
        [],
        (c) => {
          seedFake(c.host, 'ks34-host')
          seedFake(c.member, 'plain')
        },
        1,
        /a KubeSphere 3\.x host can only manage members that run KubeSphere 3\.x/,
      ],
      [
        'a member joined under another name',
        'other',
        [],
        (c) => {
          seedFake(c.host, 'ks34-host')
          seedFake(c.member, 'ks34-member')
        },
        1,
        /is already joined as "member1"/,
      ],
      [
        'a name taken by another cluster',
        'member1',
        [],
        (c) => {
          standard(c)
          c.host.put(clusterPath('member1'), {
            apiVersion: 'cluster.kubesphere.io/v1alpha1',
            kind: 'Cluster',
            metadata: {name: 'member1'},
            spec: {connection: {type: 'proxy'}, joinFederation: true},
            status: {uid: 'some-other-cluster-uid'},
          })
        },
        1,
        /cluster name "member1" is already taken on the host by another cluster/,
      ],
    ]
    for (const [label, name, argv, setup, exit, message] of cases) {
      it(label, async () => {
        setup(clusters)
        const hostWrites = clusters.host.writes().length
        const memberWrites = clusters.member.writes().length
        const {stderr, exitCode} = await joinMember(name, ...argv)
        assert.equal(exitCode, exit, stderr)
        assert.match(stderr, message)
        assert.equal(clusters.host.writes().length, hostWrites)
        assert.equal(clusters.member.writes().length, memberWrites)
      })
    }
  })
})

import assert from 'node:assert/strict'
import {mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'

import {dump, load} from 'js-yaml'

import type {MemberJoinOutput} from '../../commands/member/join.js'
import {createCertificateAuthority} from '../../src/pki/certificates.js'
import {fingerprint} from '../../src/redact.js'
import type {FixtureName} from '../../src/kubesphere-standin/fixtures.js'
import {secrets} from '../../src/kubesphere-standin/fixtures.js'
import {planted, plantedClientKeyData, plantedClusterKubeconfig} from '../fixtures/planted-credentials.js'
import {ksctl, type ProcessOutcome} from '../helpers/ksctl-process.js'
import {KubeSphereStandIn} from '../helpers/kubesphere-standin.js'
import {adminApis, resetCluster} from '../testbed/seed.js'
import {testBed} from './hooks.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const NAMESPACE = 'kubesphere-system'

interface ManifestFlag {
  type: string
  char?: string
  options?: string[]
}

/** The commands ksctl ships, as oclif lists them: a new command appears here without anyone adding it. */
const manifest = JSON.parse(readFileSync(join(root, 'oclif.manifest.json'), 'utf8')) as {
  commands: Record<string, {flags: Record<string, ManifestFlag>}>
}

/** One command line of the scan; each runs in every form its flags allow (see `forms`). */
interface Invocation {
  args: string[]
  exitCode?: number
  /** The exit code of the --dry-run forms, where it differs from the real run's. */
  dryRunExitCode?: number
  /** Whether this command's real run prints the agent manifest the user asked for, token included. */
  manifestOnStdout?: boolean
}

/**
 * The forms a command line runs in, from the command's flags in the manifest: --dry-run (text and JSON,
 * and =server where offered) first, so that previews come before the real runs, then -o yaml and
 * -o json, --json, and plain.
 */
function forms(id: string): string[][] {
  const flags = manifest.commands[id]?.flags ?? {}
  const all: string[][] = []
  const dryRun = flags['dry-run']
  if (dryRun !== undefined) {
    all.push(['--dry-run'], ['--dry-run', '--json'])
    // kubectl's --dry-run=server, where a command offers it: the API server's answer is printed too.
    if (dryRun.options?.includes('server')) all.push(['--dry-run=server'], ['--dry-run=server', '--json'])
  }
  for (const [name, flag] of Object.entries(flags)) {
    if (flag.type === 'option' && flag.options?.includes('yaml')) {
      const option = flag.char === undefined ? `--${name}` : `-${flag.char}`
      all.push([option, 'yaml'], [option, 'json'])
    }
  }
  if ('json' in flags) all.push(['--json'])
  all.push([])
  return all
}

/** A credential the test put where KubeSphere or Kubernetes keeps it. */
interface Planted {
  what: string
  value: string
}

/** The value and its base64 form: no output may hold either. */
function forms64(credentials: Planted[]): Planted[] {
  return credentials.flatMap(({what, value}) => [
    {what, value},
    {what: `${what} (base64)`, value: Buffer.from(value).toString('base64')},
  ])
}

/** A line from the middle of a PEM block: what would show if the key were printed in any form. */
function pemBody(pem: string): string {
  const line = pem.split('\n').find((text) => text !== '' && !text.startsWith('-----'))
  if (line === undefined) throw new Error('not a PEM block')
  return line
}

function filesUnder(directory: string): string[] {
  return readdirSync(directory, {recursive: true, withFileTypes: true})
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name))
}

const editions: {edition: string; host: FixtureName; member: FixtureName; jwtSecret: string}[] = [
  {edition: '3.4', host: 'ks34-host', member: 'ks34-none', jwtSecret: secrets.hostJwtSecret},
  {edition: '4.1', host: 'ks41-host', member: 'plain', jwtSecret: secrets.ks41JwtSecret},
]

for (const {edition, host, member, jwtSecret} of editions) {
  describe(`no planted credential in any output of any command, KubeSphere ${edition}, real apiservers`, function () {
    this.timeout(600_000)
    let scratch: string

    beforeEach(async () => {
      scratch = mkdtempSync(join(tmpdir(), 'ksctl-scan-'))
      await resetCluster(testBed().kubeconfigPath, 'host', host)
      await resetCluster(testBed().kubeconfigPath, 'member', member)
    })

    afterEach(() => {
      rmSync(scratch, {recursive: true, force: true})
    })

    it('runs every command with --dry-run, --json and -o, and finds none in stdout, stderr or a file', async () => {
      // Inputs (kubeconfig, proxy CA, clusters file) live apart from the directory the commands run in,
      // whose every file is scanned: a command's cwd, HOME and TMPDIR.
      const inputs = join(scratch, 'inputs')
      const work = join(scratch, 'work')
      for (const directory of [inputs, work, join(work, 'home'), join(work, 'tmp')]) mkdirSync(directory)
      const env = {HOME: join(work, 'home'), TMPDIR: join(work, 'tmp'), XDG_CONFIG_HOME: join(work, 'home')}

      // The test bed's kubeconfig, with one more user holding a bearer token that no context uses.
      const kubeconfig = load(readFileSync(testBed().kubeconfigPath, 'utf8')) as {
        users: {name: string; user: Record<string, string>}[]
      }
      const adminKeyData = kubeconfig.users.find((user) => user.name === 'host-admin')?.user[
        'client-key-data'
      ]
      assert.ok(adminKeyData !== undefined)
      const kubeconfigBearer = 'plantedBearerTokenOfAnUnusedKubeconfigUser-0e5d'
      kubeconfig.users.push({name: 'unused', user: {token: kubeconfigBearer}})
      const kubeconfigPath = join(inputs, 'kubeconfig')
      writeFileSync(kubeconfigPath, dump(kubeconfig), {mode: 0o600})
      const run = (args: string[]) =>
        ksctl([...args, '--kubeconfig', kubeconfigPath, '--log-level', 'debug'], env, {cwd: work})

      const join_ = ['member', 'join', 'member1', '--host-context', 'host', '--member-context', 'member']
      const hostApis = adminApis(testBed().kubeconfigPath, 'host')
      const memberApis = adminApis(testBed().kubeconfigPath, 'member')

      // A joined member, as a user would have it.
      if (edition === '4.1') {
        // The 4.x connection Secret: settings, and a credential beside them.
        await hostApis.core.createNamespacedSecret({
          namespace: NAMESPACE,
          body: {
            metadata: {name: 'tower', namespace: NAMESPACE},
            type: 'config.kubesphere.io/cluster-connection-config',
            stringData: {
              'configuration.yaml': dump({
                proxyPublishAddress: 'http://127.0.0.1:30721',
                registryPassword: planted.connectionPassword,
              }),
            },
          },
        })
      }
      const standIn = new KubeSphereStandIn(testBed().kubeconfigPath, 'host', 'member').start()
      const joined = await run([...join_, '--apply', '--wait', '--timeout', '60s'])
      await standIn.stop()
      assert.equal(joined.exitCode, 0, joined.stderr)

      // What tower writes once the agent connects: a kubeconfig with the member's client key and a token.
      const clusterRef = {
        group: 'cluster.kubesphere.io',
        version: 'v1alpha1',
        plural: 'clusters',
        name: 'member1',
      }
      await hostApis.custom.patchClusterCustomObject(
        {
          ...clusterRef,
          body: [{op: 'add', path: '/spec/connection/kubeconfig', value: plantedClusterKubeconfig()}],
        },
        {headers: {'Content-Type': 'application/json-patch+json'}} as never,
      )
      const cluster = (await hostApis.custom.getClusterCustomObject(clusterRef)) as {
        spec: {connection: {token: string}}
      }
      const clusterToken = cluster.spec.connection.token
      for (const apis of [hostApis, memberApis]) {
        await apis.core.createNamespacedSecret({
          namespace: NAMESPACE,
          body: {metadata: {name: 'planted', namespace: NAMESPACE}, stringData: {key: planted.secretValue}},
        })
      }

      // A proxy CA for tower issue-kubeconfig, and a clusters file for tower proxy.
      const ca = await createCertificateAuthority({commonName: 'scan-proxy-ca', validityDays: 1})
      writeFileSync(join(inputs, 'ca.crt'), ca.certPem)
      writeFileSync(join(inputs, 'ca.key'), ca.keyPem, {mode: 0o600})
      const clustersFile = join(inputs, 'clusters.yaml')
      writeFileSync(
        clustersFile,
        dump([
          {name: 'member1', token: clusterToken},
          {name: 'member1', token: planted.bearerToken},
        ]),
        {mode: 0o600},
      )

      const credentials: Planted[] = [
        {what: "the host's jwtSecret", value: jwtSecret},
        {what: "the member's own jwtSecret (3.4)", value: secrets.memberJwtSecret},
        {what: 'the admin token in kubesphere-secret (3.4)', value: secrets.adminToken},
        {what: "the Cluster's token", value: clusterToken},
        {what: "the Cluster's kubeconfig", value: plantedClusterKubeconfig()},
        {what: 'client-key-data in the Cluster kubeconfig', value: plantedClientKeyData()},
        {what: 'the client key in the Cluster kubeconfig', value: pemBody(planted.clientKeyPem)},
        {what: 'the bearer token in the Cluster kubeconfig', value: planted.bearerToken},
        {what: 'Secret data', value: planted.secretValue},
        {what: 'the password in the 4.x connection Secret', value: planted.connectionPassword},
        {what: "the kubeconfig's admin client-key-data", value: adminKeyData},
        {
          what: "the kubeconfig's admin client key",
          value: pemBody(Buffer.from(adminKeyData, 'base64').toString()),
        },
        {what: "an unused kubeconfig user's bearer token", value: kubeconfigBearer},
        {what: 'the proxy CA key', value: pemBody(ca.keyPem)},
      ]
      const everywhere = forms64(credentials)
      const butTheToken = forms64(credentials.filter(({value}) => value !== clusterToken))

      const agentRenderFile = join(work, 'agent-render.yaml')
      const memberJoinFile = join(work, 'member-join.yaml')
      const issuedKubeconfig = join(work, 'issued.kubeconfig')
      // `@RUN@` becomes a number of its own in each run: every real join changes the Cluster (a label).
      const plans: Record<string, Invocation[]> = {
        'agent:render': [
          {args: ['agent', 'render', 'member1', '--context', 'host'], manifestOnStdout: true},
          {
            args: ['agent', 'render', 'member1', '--context', 'host', '--output', agentRenderFile],
          },
          {args: ['agent', 'render', 'nosuch', '--context', 'host'], exitCode: 1},
        ],
        doctor: [{args: ['doctor', 'member1', '--host-context', 'host', '--member-context', 'member']}],
        'host:init': [{args: ['host', 'init', '--context', 'host']}],
        // The host runs Tower's proxy here: invite refuses before any change. Its run on ksctl's proxy, with the
        // scan of what it prints, is test/cluster/two-sided-join.test.ts.
        'host:invite': [{args: ['host', 'invite', 'member2', '--context', 'host'], exitCode: 1}],
        'join-token:list': [{args: ['join-token', 'list', '--context', 'host']}],
        'agent-token:list': [{args: ['agent-token', 'list', '--context', 'host']}],
        // Tower's proxy again: rotate refuses before any change. Its run on ksctl's proxy, with the scan of what it
        // and the runtime print, is test/cluster/agent-token-rotation.test.ts.
        'agent-token:rotate': [
          {
            args: ['agent-token', 'rotate', 'member1', '--context', 'host', '--lifetime', '720h'],
            exitCode: 1,
          },
        ],
        'join-token:revoke': [{args: ['join-token', 'revoke', 'aaaaaa', '--context', 'host'], exitCode: 1}],
        'member:register': [
          {
            // No proxy answers there: the member is checked, then the proxy is unreachable.
            args: [
              ...['member', 'register', 'member1', '--context', 'member'],
              ...['--proxy', 'https://127.0.0.1:9', '--pin', `sha256:${'0'.repeat(64)}`],
              ...['--token', 'abcdef.abcdefghijklmnopqrstuvwxyz'],
            ],
            exitCode: 1,
          },
        ],
        info: [{args: ['info', '--context', 'host']}, {args: ['info', '--context', 'member']}],
        'proxy:set-address': [
          {args: ['proxy', 'set-address', 'http://127.0.0.1:3@RUN@', '--context', 'host']},
        ],
        // The host has a member on Tower's agent (its planted kubeconfig): -o refuses to render around it, a real run
        // cannot move it (its tunnel leads nowhere) and is undone; a dry run shows the host's changes.
        'proxy:install': [
          {args: ['proxy', 'install', '--context', 'host', '--yes'], exitCode: 1, dryRunExitCode: 0},
        ],
        'proxy:uninstall': [{args: ['proxy', 'uninstall', '--context', 'host', '--yes']}],
        status: [{args: ['status', '--context', 'host']}],
        // The playground's own run is test/cluster/playground.test.ts; here its refusal (binaries that do not
        // exist: DIR, made in this command's cwd, must be gone again) and its answers when none runs.
        'playground:up': [
          {
            args: [
              ...['playground', 'up'],
              ...[
                '--apiserver-bin',
                join(inputs, 'no-kube-apiserver'),
                '--etcd-bin',
                join(inputs, 'no-etcd'),
              ],
            ],
            exitCode: 2,
          },
        ],
        'playground:status': [{args: ['playground', 'status'], exitCode: 1}],
        'playground:down': [{args: ['playground', 'down']}],
        'tower:agent': [
          {
            // A proxy that refuses connections: the agent gives up after one retry.
            args: [
              'tower',
              'agent',
              '--name',
              'member1',
              '--token',
              clusterToken,
              '--proxy-server',
              'https://127.0.0.1:9',
              '--max-retry',
              '1',
              '--kubernetes-service',
              '127.0.0.1:1',
            ],
            exitCode: 1,
          },
        ],
        'tower:issue-kubeconfig': [
          ...[[], ['--file', issuedKubeconfig]].map((file) => ({
            args: [
              'tower',
              'issue-kubeconfig',
              '--cluster',
              'member1',
              '--server',
              'https://127.0.0.1:6443/clusters/member1',
              '--ca-cert',
              join(inputs, 'ca.crt'),
              '--ca-key',
              join(inputs, 'ca.key'),
              ...file,
            ],
          })),
        ],
        'tower:proxy': [
          {
            // Exercised up to its start, with tokens in its clusters file: one it refuses (a name twice).
            // Serving agents is the tunnel tests' part, and prints no object.
            args: [
              'tower',
              'proxy',
              '--clusters',
              clustersFile,
              '--listen',
              '127.0.0.1:0',
              '--insecure-plain',
            ],
            exitCode: 2,
          },
        ],
        'member:join': [
          {args: [...join_, '--label', 'scan=@RUN@'], manifestOnStdout: true},
          {args: [...join_, '--apply', '--label', 'scan=@RUN@']},
          {args: [...join_, '--output', memberJoinFile, '--label', 'scan=@RUN@']},
        ],
        // Last: it removes the member.
        'member:leave': [
          {
            args: [
              'member',
              'leave',
              'member1',
              '--host-context',
              'host',
              '--member-context',
              'member',
              '--yes',
            ],
          },
        ],
      }
      assert.deepEqual(
        Object.keys(plans).sort(),
        Object.keys(manifest.commands).sort(),
        'every command of oclif.manifest.json has a plan here',
      )

      const problems: string[] = []
      const outputs: string[] = []
      let runNumber = 1000
      for (const [id, invocations] of Object.entries(plans)) {
        for (const invocation of invocations) {
          for (const form of forms(id)) {
            runNumber++
            const args = [...invocation.args, ...form].map((arg) => arg.replace('@RUN@', String(runNumber)))
            const outcome: ProcessOutcome = await run(args)
            const line = `ksctl ${args.join(' ')}`
            outputs.push(outcome.stdout)
            const expectedExit = form.some((arg) => arg.startsWith('--dry-run'))
              ? (invocation.dryRunExitCode ?? invocation.exitCode ?? 0)
              : (invocation.exitCode ?? 0)
            if (outcome.exitCode !== expectedExit) {
              problems.push(`${line}: exit ${outcome.exitCode}\n${outcome.stderr}`)
            }
            const realRun = !form.some((arg) => arg.startsWith('--dry-run'))
            const streams = {
              stdout: realRun && invocation.manifestOnStdout === true ? butTheToken : everywhere,
              stderr: everywhere,
            }
            for (const [stream, forbidden] of Object.entries(streams)) {
              for (const {what} of forbidden.filter(({value}) =>
                outcome[stream as 'stdout'].includes(value),
              )) {
                problems.push(`${line}: ${what} in ${stream}`)
              }
            }
            const manifestFiles = [agentRenderFile, memberJoinFile]
            for (const file of filesUnder(work)) {
              const text = readFileSync(file, 'utf8')
              const forbidden = manifestFiles.includes(file) ? butTheToken : everywhere
              for (const {what} of forbidden.filter(({value}) => text.includes(value))) {
                problems.push(`${line}: ${what} in ${file}`)
              }
            }
          }
        }
      }
      assert.deepEqual(problems, [])

      // The scan saw what it guards: the manifests asked for, and the Cluster's credentials as fingerprints.
      for (const file of [agentRenderFile, memberJoinFile]) {
        assert.ok(readFileSync(file, 'utf8').includes(`--token=${clusterToken}`), file)
      }
      const all = outputs.join('\n')
      assert.ok(all.includes(`<redacted ${fingerprint(plantedClusterKubeconfig())}>`))
      assert.ok(all.includes(`<redacted ${fingerprint(clusterToken)}>`))
    })

    it("a re-run's dry run shows the agent as the real run leaves it", async () => {
      if (edition === '4.1') {
        assert.equal(
          (
            await ksctl([
              'proxy',
              'set-address',
              'http://127.0.0.1:30721',
              '--context',
              'host',
              '--kubeconfig',
              testBed().kubeconfigPath,
            ])
          ).exitCode,
          0,
        )
      }
      const args = [
        'member',
        'join',
        'member1',
        '--host-context',
        'host',
        '--member-context',
        'member',
        '--apply',
        '--kubeconfig',
        testBed().kubeconfigPath,
      ]
      const standIn = new KubeSphereStandIn(testBed().kubeconfigPath, 'host', 'member').start()
      const joined = await ksctl([...args, '--wait', '--timeout', '60s'])
      await standIn.stop()
      assert.equal(joined.exitCode, 0, joined.stderr)
      const dry = await ksctl([...args, '--dry-run', '--json'])
      assert.equal(dry.exitCode, 0, dry.stderr)
      const result = JSON.parse(dry.stdout) as MemberJoinOutput
      assert.deepEqual(
        result.changes.filter((change) => change.changed).map((change) => change.diff),
        [],
      )
    })
  })
}

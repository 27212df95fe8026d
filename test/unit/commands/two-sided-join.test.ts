import assert from 'node:assert/strict'

import HostInvite from '../../../commands/host/invite.js'
import MemberRegister from '../../../commands/member/register.js'
import {parseRecords} from '../../../src/join-token/records.js'
import {JOIN_TOKENS_SECRET} from '../../../src/join-token/store.js'
import {hashJoinToken, parseJoinToken} from '../../../src/join-token/token.js'
import type {HostInviteResult} from '../../../src/kubesphere/host-invite.js'
import {certificateFingerprint} from '../../../src/pki/certificates.js'
import {seedFake, startFakeClusters, type FakeClusters} from '../../helpers/fake-clusters.js'
import {KubeSphereStandIn} from '../../helpers/kubesphere-standin.js'
import {runCommand} from '../../helpers/run-command.js'
import {loopbackPki} from '../../helpers/test-pki.js'

const towerServicePath = '/api/v1/namespaces/kubesphere-system/services/tower'
const servingPath = '/api/v1/namespaces/kubesphere-system/secrets/ksctl-tower-serving'
const tokensPath = `/api/v1/namespaces/kubesphere-system/secrets/${JOIN_TOKENS_SECRET}`

describe('ksctl host invite', () => {
  let clusters: FakeClusters
  let standIn: KubeSphereStandIn | undefined

  beforeEach(async () => {
    clusters = await startFakeClusters()
    seedFake(clusters.host, 'ks41-host', {proxyPublishAddress: 'http://203.0.113.10:30721'})
  })

  afterEach(async () => {
    await standIn?.stop()
    standIn = undefined
    await clusters.stop()
  })

  const invite = (...argv: string[]) =>
    runCommand<HostInviteResult>(HostInvite, [
      'member1',
      '--kubeconfig',
      clusters.kubeconfigPath,
      '--context',
      'host',
      ...argv,
    ])

  /** What `ksctl proxy install` and the proxy's first start leave on the host. */
  async function runKsctlProxy(): Promise<string> {
    const service = clusters.host.get(towerServicePath)!
    clusters.host.put(towerServicePath, {
      ...service,
      spec: {...(service.spec as object), selector: {'app.kubernetes.io/name': 'ksctl-tower-proxy'}},
    })
    const {server} = await loopbackPki()
    clusters.host.put(servingPath, {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: {name: 'ksctl-tower-serving', namespace: 'kubesphere-system'},
      type: 'kubernetes.io/tls',
      data: {
        'tls.crt': Buffer.from(server.certPem).toString('base64'),
        'tls.key': Buffer.from(server.keyPem).toString('base64'),
      },
    })
    return certificateFingerprint(server.certPem)
  }

  it("refuses a host that runs Tower's proxy, says what to do instead, and writes nothing", async () => {
    const outcome = await invite()
    assert.equal(outcome.exitCode, 1)
    assert.match(outcome.stderr, /runs KubeSphere's Tower proxy .*which has no join exchange/)
    assert.match(
      outcome.stderr,
      /→ install ksctl's proxy on the host, then invite again: ksctl proxy install --context host/,
    )
    assert.match(outcome.stderr, /--output agent\.yaml/)
    assert.deepEqual(clusters.host.writes(), [])
  })

  it('refuses a host whose ksctl proxy has not made its serving key yet, and a --ttl out of range, writing nothing', async () => {
    await runKsctlProxy()
    clusters.host.delete(servingPath)
    const noKey = await invite()
    assert.equal(noKey.exitCode, 1)
    assert.match(noKey.stderr, /ksctl-tower-serving .* holds no serving certificate/)
    for (const ttl of ['0s', '25h', 'soon']) {
      const outcome = await invite('--ttl', ttl)
      assert.equal(outcome.exitCode, 2, ttl)
    }
    assert.deepEqual(clusters.host.writes(), [])
  })

  it('registers the Cluster, waits for the proxy, and prints the member command alone on stdout; the host keeps only a hash', async () => {
    const pin = await runKsctlProxy()
    const dry = await invite('--dry-run')
    assert.equal(dry.exitCode, 0, dry.stderr)
    assert.deepEqual(
      clusters.host.writes().filter((request) => !request.dryRun),
      [],
    )
    assert.match(dry.stdout, /would change host: secrets kubesphere-system\/ksctl-join-tokens/)
    assert.match(dry.stdout, /^ {2}ksctl member register member1 .* --token <made-by-the-real-run> --wait$/m)

    // The tower proxy's part: the token and Initialized, as ksctl's proxy writes them.
    standIn = new KubeSphereStandIn(clusters.kubeconfigPath, 'host', undefined, {
      agentConnects: false,
    }).start()
    const outcome = await invite('--ttl', '2h')
    assert.equal(outcome.exitCode, 0, outcome.stderr)
    const command = outcome.stdout.trimEnd()
    assert.equal(command.split('\n').length, 1)
    const token = parseJoinToken(/--token (\S+)/.exec(command)?.[1] ?? '')
    assert.ok(token !== undefined, command)
    assert.equal(
      command,
      `ksctl member register member1 --proxy https://203.0.113.10:30721 --pin ${pin} --token ${token.text} --wait`,
    )
    // The published address was http://: ksctl's proxy serves TLS there, and the user is told.
    assert.match(
      outcome.stderr,
      /warn: the host publishes http:\/\/203\.0\.113\.10:30721; .* members are given https:\/\/203\.0\.113\.10:30721/,
    )
    assert.match(
      outcome.stderr,
      new RegExp(`join token ${token.id} for "member1" expires at \\S+ \\(in 2h\\)`),
    )

    const secret = clusters.host.get(tokensPath)!
    const stored = JSON.stringify(secret)
    assert.ok(!stored.includes(token.secret) && !stored.includes(Buffer.from(token.text).toString('base64')))
    const data = Object.fromEntries(
      Object.entries(secret.data as Record<string, string>).map(([key, value]) => [
        key,
        Buffer.from(value, 'base64').toString(),
      ]),
    )
    const record = parseRecords(data).records.get(token.id)
    assert.equal(record?.hash, hashJoinToken(token))
    assert.equal(record?.cluster, 'member1')
    assert.equal(
      record?.clusterUid,
      clusters.host.get('/apis/cluster.kubesphere.io/v1alpha1/clusters/member1')?.metadata.uid,
    )
    assert.equal(Date.parse(record?.expiresAt ?? '') - Date.parse(record?.createdAt ?? ''), 2 * 3600_000)

    // Again for the registered Cluster: a second token, and the Cluster is not written again.
    const clusterWrites = () =>
      clusters.host
        .writes()
        .filter((request) => request.path.includes('/clusters/member1') && !request.dryRun).length
    const before = clusterWrites()
    const again = await invite()
    assert.equal(again.exitCode, 0, again.stderr)
    assert.equal(clusterWrites(), before)
    assert.equal(Object.keys(clusters.host.get(tokensPath)?.data as object).length, 2)
  })
})

describe('ksctl member register', () => {
  let clusters: FakeClusters

  beforeEach(async () => {
    clusters = await startFakeClusters()
  })

  afterEach(async () => {
    await clusters.stop()
  })

  const register = (...argv: string[]) =>
    runCommand(MemberRegister, [
      'member1',
      '--kubeconfig',
      clusters.kubeconfigPath,
      '--context',
      'member',
      ...argv,
    ])
  const good = {
    proxy: 'https://203.0.113.10:8080',
    pin: `sha256:${'ab'.repeat(32)}`,
    token: 'abcdef.abcdefghijklmnopqrstuvwxyz',
  }

  it('refuses a proxy that is not https://host:port, a pin or a token of the wrong shape, before any request', async () => {
    const cases: [string, Record<string, string>, RegExp][] = [
      [
        'plain http',
        {proxy: 'http://203.0.113.10:8080'},
        /--proxy "http:\/\/203\.0\.113\.10:8080" must be https:\/\/host:port/,
      ],
      ['no port', {proxy: 'https://203.0.113.10'}, /must be https:\/\/host:port/],
      ['a short pin', {pin: 'sha256:abcd'}, /--pin "sha256:abcd" is not sha256:<64 hex digits>/],
      [
        'a token without its secret',
        {token: 'abcdef'},
        /the join token \(--token\) is not of the form ID\.SECRET/,
      ],
    ]
    for (const [what, change, message] of cases) {
      const flags = {...good, ...change}
      const outcome = await register('--proxy', flags.proxy, '--pin', flags.pin, '--token', flags.token)
      assert.equal(outcome.exitCode, 2, `${what}: ${outcome.stderr}`)
      assert.match(outcome.stderr, message, `${what}: ${outcome.stderr}`)
      assert.ok(
        !outcome.stderr.includes(good.token.split('.')[1] ?? '-'),
        `${what}: the token's secret in the error`,
      )
    }
    assert.deepEqual(clusters.member.requests, [])
  })

  it('refuses a host as the member before it contacts the proxy', async () => {
    seedFake(clusters.member, 'ks34-host')
    const outcome = await register('--proxy', good.proxy, '--pin', good.pin, '--token', good.token)
    assert.equal(outcome.exitCode, 1)
    assert.match(
      outcome.stderr,
      /context "member" is a KubeSphere host; a host cannot join another host as a member/,
    )
    assert.deepEqual(clusters.member.writes(), [])
  })
})

import assert from 'node:assert/strict'
import http from 'node:http'

import {ClusterClients} from '../../../src/k8s/clients.js'
import type {ClusterClient} from '../../../src/k8s/cluster-client.js'
import {applyEdit} from '../../../src/k8s/object-edit.js'
import {
  JoinExchangeRefusal,
  pinnedRequest,
  type PinnedProxy,
} from '../../../src/join-token/exchange-client.js'
import {
  CHECK_PATH,
  EXCHANGE_PATH,
  STATUS_PATH,
  type ExchangeResponse,
  type StatusResponse,
} from '../../../src/join-token/exchange-protocol.js'
import {parseRecords, type JoinTokenRecord} from '../../../src/join-token/records.js'
import {addJoinTokenEdit, JOIN_TOKENS_SECRET, revokeJoinTokensEdit} from '../../../src/join-token/store.js'
import {generateJoinToken, hashJoinToken, type JoinToken} from '../../../src/join-token/token.js'
import {secrets} from '../../../src/kubesphere-standin/fixtures.js'
import {redact} from '../../../src/redact.js'
import type {AgentListenerRequests} from '../../../src/tower/proxy/agent-listener.js'
import {JoinExchange} from '../../../src/tower/proxy/join-exchange.js'
import {TowerProxy} from '../../../src/tower/proxy/proxy.js'
import type {ClusterRegistry, RegisteredCluster} from '../../../src/tower/proxy/registry.js'
import {clusterHeader} from '../../../src/tower/shared/agent-link.js'
import {seedFake, startFakeClusters, type FakeClusters} from '../../helpers/fake-clusters.js'
import {CapturedLog, testProxyCa} from '../tower/harness.js'

const AGENT_TOKEN = 'agent-token-of-member1-0123456789abcdef0123456789'
const clusterPath = (name: string) => `/apis/cluster.kubesphere.io/v1alpha1/clusters/${name}`
const secretPath = `/api/v1/namespaces/kubesphere-system/secrets/${JOIN_TOKENS_SECRET}`
const now = new Date('2026-12-07T12:00:00Z')

/** The registry the exchange reads agent tokens from: member1, initialized. */
function registryOf(clusters: RegisteredCluster[]): ClusterRegistry {
  return {
    list: () => clusters,
    get: (name) => clusters.find((cluster) => cluster.name === name),
    onChange: () => undefined,
    agentConnected: () => undefined,
    agentDisconnected: () => undefined,
    problem: () => undefined,
    close: () => Promise.resolve(),
  }
}

/** Counts what reaches the exchange, to show that nothing does when the pin is wrong. */
class Counting implements AgentListenerRequests {
  served = 0
  constructor(private readonly inner: AgentListenerRequests) {}
  handles(path: string): boolean {
    return this.inner.handles(path)
  }
  serve(request: http.IncomingMessage, response: http.ServerResponse): void {
    this.served++
    this.inner.serve(request, response)
  }
}

for (const edition of ['3.x', '4.x'] as const) {
  describe(`the join exchange on the proxy's agent listener (KubeSphere ${edition} host)`, () => {
    let clusters: FakeClusters
    let host: ClusterClient
    let proxy: TowerProxy
    let requests: Counting
    let pinned: PinnedProxy
    let captured: CapturedLog
    let memberUid: string
    /** What the registry serves: member1, initialized, until a test takes it out. */
    let served: RegisteredCluster[]

    beforeEach(async () => {
      clusters = await startFakeClusters()
      seedFake(clusters.host, edition === '3.x' ? 'ks34-host' : 'ks41-host')
      clusters.host.put(clusterPath('member1'), {
        apiVersion: 'cluster.kubesphere.io/v1alpha1',
        kind: 'Cluster',
        metadata: {name: 'member1'},
        spec: {joinFederation: true, connection: {type: 'proxy', token: AGENT_TOKEN}},
        status: {conditions: [{type: 'Initialized', status: 'True'}]},
      })
      host = ClusterClients.load({kubeconfig: clusters.kubeconfigPath}).forContext('host')
      captured = new CapturedLog()
      served = [{name: 'member1', token: AGENT_TOKEN}]
      const registry = registryOf(served)
      requests = new Counting(
        new JoinExchange({
          client: host,
          registry,
          namespace: 'kubesphere-system',
          log: captured.logger(),
          now: () => now,
        }),
      )
      proxy = new TowerProxy({
        registry,
        ca: await testProxyCa(),
        listen: '127.0.0.1:0',
        agentTls: 'serving',
        frontEnd: '127.0.0.1:0',
        log: captured.logger(),
        agentRequests: requests,
      })
      await proxy.start()
      pinned = {url: new URL(`https://127.0.0.1:${String(proxy.agentPort)}`), pin: proxy.servingPin ?? ''}
      memberUid = 'member-kube-system-uid'
    })

    afterEach(async () => {
      await proxy.stop()
      await clusters.stop()
    })

    const clusterUid = () => clusters.host.get(clusterPath('member1'))?.metadata.uid ?? ''

    async function invite(fields: Partial<JoinTokenRecord> = {}): Promise<JoinToken> {
      const token = generateJoinToken()
      await applyEdit(
        addJoinTokenEdit(
          host,
          {
            id: token.id,
            hash: hashJoinToken(token),
            cluster: 'member1',
            clusterUid: clusterUid(),
            edition,
            createdAt: '2026-12-07T11:30:00Z',
            expiresAt: '2026-12-07T12:30:00Z',
            ...fields,
          },
          now,
        ),
      )
      return token
    }

    const ask = (path: string, token: JoinToken | string, cluster = 'member1') =>
      pinnedRequest(
        pinned,
        {
          method: 'POST',
          path,
          body: {cluster, token: typeof token === 'string' ? token : token.text, memberUid},
        },
        5000,
      )
    const refusal = (promise: Promise<unknown>) =>
      promise.then(
        () => 'answered',
        (error: unknown) => (error instanceof JoinExchangeRefusal ? error.code : String(error)),
      )
    const stored = (id: string) =>
      parseRecords(
        Object.fromEntries(
          Object.entries((clusters.host.get(secretPath)?.data ?? {}) as Record<string, string>).map(
            ([key, value]) => [key, Buffer.from(value, 'base64').toString()],
          ),
        ),
      ).records.get(id)

    it("trades a token once for the cluster's agent token (and on 3.x the host's jwtSecret), and logs neither", async () => {
      const token = await invite()
      const answer = (await ask(EXCHANGE_PATH, token)) as ExchangeResponse
      assert.deepEqual(answer, {
        cluster: 'member1',
        edition,
        agentToken: AGENT_TOKEN,
        ...(edition === '3.x' && {jwtSecret: secrets.hostJwtSecret}),
      })
      assert.equal(stored(token.id)?.usedBy, memberUid)
      assert.equal(stored(token.id)?.usedAt, now.toISOString())
      assert.equal(await refusal(ask(EXCHANGE_PATH, token)), 'token_used')
      for (const secret of [token.secret, AGENT_TOKEN, secrets.hostJwtSecret]) {
        assert.ok(!captured.text.includes(secret), 'a credential in the log')
      }
      assert.match(captured.text, new RegExp(`"msg":"a member used a join token","tokenId":"${token.id}"`))
    })

    it('of two uses at once, stores one: the other is told the token is used', async () => {
      const token = await invite()
      const outcomes = (
        await Promise.all([refusal(ask(EXCHANGE_PATH, token)), refusal(ask(EXCHANGE_PATH, token))])
      ).sort()
      assert.deepEqual(outcomes, ['answered', 'token_used'])
      // The loser's write was refused on the resourceVersion, not by luck of timing: both read the unused token.
      const puts = clusters.host.requests.filter(
        (request) => request.method === 'PUT' && request.path === secretPath,
      )
      assert.equal(puts.length, 2)
    })

    it('checks a token without using it', async () => {
      const token = await invite()
      assert.deepEqual(await ask(CHECK_PATH, token), {
        cluster: 'member1',
        edition,
        expiresAt: '2026-12-07T12:30:00Z',
      })
      assert.equal(stored(token.id)?.usedAt, undefined)
      assert.equal(((await ask(EXCHANGE_PATH, token)) as ExchangeResponse).agentToken, AGENT_TOKEN)
    })

    it('refuses an unknown, malformed, expired, revoked or wrong-cluster token, each with its code', async () => {
      const valid = await invite()
      const expired = await invite({expiresAt: '2026-12-07T11:59:00Z'})
      const revoked = await invite()
      await applyEdit(revokeJoinTokensEdit(host, 'revoke', (record) => record.id === revoked.id, now))
      assert.equal(await refusal(ask(EXCHANGE_PATH, generateJoinToken())), 'token_invalid')
      assert.equal(
        await refusal(ask(EXCHANGE_PATH, `${valid.id}.${generateJoinToken().secret}`)),
        'token_invalid',
      )
      assert.equal(await refusal(ask(EXCHANGE_PATH, 'not-a-token')), 'token_malformed')
      assert.equal(await refusal(ask(EXCHANGE_PATH, expired)), 'token_expired')
      assert.equal(await refusal(ask(EXCHANGE_PATH, revoked)), 'token_revoked')
      assert.equal(await refusal(ask(EXCHANGE_PATH, valid, 'member2')), 'token_wrong_cluster')
      // None of the refusals used the valid token.
      assert.equal(stored(valid.id)?.usedAt, undefined)
    })

    it("refuses, without using the token, a Cluster created again, another member's Cluster, and one not initialized", async () => {
      const token = await invite({clusterUid: 'uid-of-a-cluster-deleted-since'})
      assert.equal(await refusal(ask(EXCHANGE_PATH, token)), 'cluster_not_found')
      const other = await invite()
      const cluster = clusters.host.get(clusterPath('member1'))!
      clusters.host.put(clusterPath('member1'), {...cluster, status: {uid: 'another-members-uid'}})
      assert.equal(await refusal(ask(EXCHANGE_PATH, other)), 'member_mismatch')
      clusters.host.put(clusterPath('member1'), cluster)
      served.splice(0)
      assert.equal(await refusal(ask(EXCHANGE_PATH, other)), 'cluster_not_initialized')
      assert.equal(stored(token.id)?.usedAt, undefined)
      assert.equal(stored(other.id)?.usedAt, undefined)
    })

    it("keeps nothing a caller sent: a token is not registered with the proxy's redactor", async () => {
      // Registered, "agent connected" would be redacted from every later log line of the proxy, and every string
      // sent would stay in its memory.
      assert.equal(await refusal(ask(EXCHANGE_PATH, 'agent connected')), 'token_malformed')
      const unknown = generateJoinToken()
      assert.equal(await refusal(ask(EXCHANGE_PATH, unknown)), 'token_invalid')
      assert.equal(redact('agent connected'), 'agent connected')
      assert.equal(redact(unknown.text), unknown.text)
    })

    it('sends nothing to a proxy whose key is not the pin', async () => {
      const token = await invite()
      const wrongPin = {...pinned, pin: `sha256:${'ab'.repeat(32)}`}
      await assert.rejects(
        pinnedRequest(
          wrongPin,
          {method: 'POST', path: EXCHANGE_PATH, body: {cluster: 'member1', token: token.text, memberUid}},
          5000,
        ),
        (error: Error & {code?: string}) =>
          error.code === 'TLS_VERIFICATION_FAILED' &&
          /presented key sha256:[0-9a-f]{64}, not the pinned/.test(error.message),
      )
      assert.equal(requests.served, 0)
      assert.equal(stored(token.id)?.usedAt, undefined)
    })

    it('answers the status of a cluster to the holder of its agent token only', async () => {
      const status = (agentToken: string) =>
        pinnedRequest(
          pinned,
          {
            method: 'GET',
            path: STATUS_PATH,
            headers: {[clusterHeader]: 'member1', authorization: `Bearer ${agentToken}`},
          },
          5000,
        )
      const expected: StatusResponse = {
        cluster: 'member1',
        conditions: {Initialized: 'True'},
        ready: false,
      }
      assert.deepEqual(await status(AGENT_TOKEN), expected)
      assert.equal(await refusal(status('not-the-agent-token')), 'unauthorized')
    })

    it('after five failed attempts from an address, asks it to wait, yet still takes a correct token from it', async () => {
      const token = await invite()
      for (let attempt = 0; attempt < 5; attempt++) {
        assert.equal(await refusal(ask(EXCHANGE_PATH, generateJoinToken())), 'token_invalid')
      }
      const blocked = await ask(EXCHANGE_PATH, generateJoinToken()).catch((error: unknown) => error)
      assert.ok(blocked instanceof JoinExchangeRefusal && blocked.code === 'rate_limited')
      assert.ok((blocked.retryAfterMs ?? 0) > 0)
      // Another member behind the same address, with the token the host gave it.
      const answer = (await ask(EXCHANGE_PATH, token)) as ExchangeResponse
      assert.equal(answer.agentToken, AGENT_TOKEN)
      assert.equal(stored(token.id)?.usedAt, now.toISOString())
    })
  })
}

describe('the join exchange over plain ws:// (--insecure-plain)', () => {
  it('is refused: a token never crosses the network unencrypted', async () => {
    const clusters = await startFakeClusters()
    const registry = registryOf([])
    const host = ClusterClients.load({kubeconfig: clusters.kubeconfigPath}).forContext('host')
    const captured = new CapturedLog()
    const proxy = new TowerProxy({
      registry,
      ca: await testProxyCa(),
      listen: '127.0.0.1:0',
      agentTls: undefined,
      frontEnd: '127.0.0.1:0',
      log: captured.logger(),
      agentRequests: new JoinExchange({
        client: host,
        registry,
        namespace: 'kubesphere-system',
        log: captured.logger(),
      }),
    })
    await proxy.start()
    try {
      const answer = await new Promise<{status: number; body: string}>((resolve, reject) => {
        const request = http.request(
          {host: '127.0.0.1', port: proxy.agentPort, method: 'POST', path: EXCHANGE_PATH},
          (response) => {
            let body = ''
            response.on('data', (chunk: Buffer) => (body += chunk.toString()))
            response.on('end', () => resolve({status: response.statusCode ?? 0, body}))
          },
        )
        request.on('error', reject)
        request.end('{}')
      })
      assert.equal(answer.status, 403)
      assert.match(answer.body, /"code":"tls_required"/)
      assert.deepEqual(clusters.host.requests, [])
    } finally {
      await proxy.stop()
      await clusters.stop()
    }
  })
})

import type {IncomingMessage} from 'node:http'

import WebSocket from 'ws'

import {connectPath} from '../tower/shared/agent-link.js'
import {SUBPROTOCOL} from '../tunnel/constants.js'

/** The sub-protocol KubeSphere's Tower agents offer (TOWER v0.2.1 and master, pkg/version/version.go). */
const TOWER_SUBPROTOCOL = 'kubesphere-v1'

/** What answered at a proxy address, judged by how it treats an agent's WebSocket upgrade. */
export type ProxyProbe =
  {kind: 'tower'} | {kind: 'ksctl'} | {kind: 'other'; answer: string} | {kind: 'unreachable'; reason: string}

/**
 * Finds out whether a tower proxy answers at `address`, with upgrades only a tower proxy answers in its own way
 * (a TCP connect proves nothing: any listener or transparent proxy accepts it):
 *
 * - KubeSphere's Tower (v0.2.1 and master, TOWER pkg/proxy/proxy.go handleClientHandler) takes a WebSocket
 *   upgrade offering exactly `kubesphere-v1`, on any path, and starts an SSH server on it: its first message is
 *   the SSH greeting (`SSH-kubesphere-v1-server`). An upgrade offering anything else falls through to its
 *   `/health`, `/version` and 404 handler.
 * - ksctl's proxy (src/tower/proxy/agent-listener.ts) authenticates an upgrade at `/connect` before
 *   upgrading: without a token it refuses with 401 (429 while the source is blocked). The refusal counts as
 *   one failed authentication of this machine's address in the proxy's limiter. Any other path is a 404
 *   before that.
 *
 * No credential is sent, so the certificate of an https address is not verified: the question is who answers.
 */
export async function probeProxyAddress(address: string, timeoutMs: number): Promise<ProxyProbe> {
  const tower = await upgrade(
    address,
    '/',
    {headers: {'Sec-WebSocket-Protocol': TOWER_SUBPROTOCOL}},
    timeoutMs,
  )
  if (tower.kind === 'unreachable') return {kind: 'unreachable', reason: tower.reason}
  if (tower.kind === 'greeting' && tower.text.startsWith('SSH-')) return {kind: 'tower'}
  // Silence or an upgrade means no ksctl proxy either: it answers every upgrade at once, and upgrades none without a token.
  if (tower.kind === 'greeting' || tower.kind === 'silent') {
    return {kind: 'other', answer: `${describe(tower, timeoutMs)} to a Tower agent's upgrade`}
  }
  const ksctl = await upgrade(address, connectPath, {protocols: [SUBPROTOCOL]}, timeoutMs)
  if (ksctl.kind === 'refused' && (ksctl.status === 401 || ksctl.status === 429)) return {kind: 'ksctl'}
  return {
    kind: 'other',
    answer:
      `${describe(tower, timeoutMs)} to a Tower agent's upgrade, ` +
      `${describe(ksctl, timeoutMs)} to a ksctl agent's upgrade at ${connectPath}`,
  }
}

type UpgradeAnswer =
  | {kind: 'refused'; status: number}
  | {kind: 'greeting'; text: string}
  | {kind: 'silent'; upgraded: boolean}
  | {kind: 'broken'; reason: string}
  | {kind: 'unreachable'; reason: string}

const unreachableCodes = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN'])

/** One WebSocket upgrade without credentials: the status it was refused with, or the first message after it. */
function upgrade(
  address: string,
  path: string,
  offer: {headers?: Record<string, string>; protocols?: string[]},
  timeoutMs: number,
): Promise<UpgradeAnswer> {
  const url = new URL(path, address.replace(/^http/, 'ws'))
  return new Promise((resolve) => {
    let settled = false
    const socket = new WebSocket(url, offer.protocols ?? [], {
      headers: offer.headers ?? {},
      handshakeTimeout: timeoutMs,
      rejectUnauthorized: false,
      perMessageDeflate: false,
      followRedirects: false,
    })
    let upgraded = false
    const timer = setTimeout(() => done({kind: 'silent', upgraded}), timeoutMs)
    function done(answer: UpgradeAnswer): void {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.terminate()
      resolve(answer)
    }
    socket.on('unexpected-response', (request, response: IncomingMessage) => {
      response.resume()
      request.destroy()
      done({kind: 'refused', status: response.statusCode ?? 0})
    })
    socket.on('open', () => (upgraded = true))
    socket.on('message', (data: Buffer) => done({kind: 'greeting', text: data.toString('latin1', 0, 64)}))
    socket.on('error', (error: NodeJS.ErrnoException) => {
      const code = error.code ?? ''
      if (unreachableCodes.has(code)) done({kind: 'unreachable', reason: code})
      else if (/handshake has timed out/.test(error.message)) done({kind: 'silent', upgraded})
      else done({kind: 'broken', reason: code === '' ? error.message : code})
    })
    socket.on('close', () => done({kind: 'broken', reason: 'the connection closed without an answer'}))
  })
}

function describe(answer: UpgradeAnswer, timeoutMs: number): string {
  switch (answer.kind) {
    case 'refused':
      return `HTTP ${answer.status}`
    case 'greeting':
      return 'an upgrade whose first message is not an SSH greeting'
    case 'silent':
      return `${answer.upgraded ? 'an upgrade, then' : ''} no answer within ${timeoutMs / 1000}s`.trimStart()
    case 'broken':
    case 'unreachable':
      return answer.reason
  }
}

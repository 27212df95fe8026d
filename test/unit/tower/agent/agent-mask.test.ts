import assert from 'node:assert/strict'
import {createHash} from 'node:crypto'
import {once} from 'node:events'
import http from 'node:http'
import https from 'node:https'
import type {AddressInfo} from 'node:net'
import type {Duplex} from 'node:stream'

import {TowerAgent, normalizeProxyUrl} from '../../../../src/tower/agent/agent.js'
import {TowerMetrics} from '../../../../src/tower/shared/metrics.js'
import {SUBPROTOCOL} from '../../../../src/tunnel/index.js'
import {loopbackPki} from '../../../helpers/test-pki.js'
import {CapturedLog, clusterToken} from '../harness.js'

const webSocketGuid = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'

/**
 * A stand-in proxy that completes the WebSocket handshake by hand and reports the masking key of the first
 * frame the agent sends (its first keepalive PING), which no WebSocket library exposes.
 */
async function firstFrameMask(secure: boolean): Promise<Buffer> {
  const pki = await loopbackPki('agent-mask')
  const server = secure
    ? https.createServer({cert: pki.server.certPem, key: pki.server.keyPem})
    : http.createServer()
  const mask = new Promise<Buffer>((resolve) => {
    server.on('upgrade', (request: http.IncomingMessage, socket: Duplex) => {
      const accept = createHash('sha1')
        .update(`${String(request.headers['sec-websocket-key'])}${webSocketGuid}`)
        .digest('base64')
      socket.write(
        'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
          `Sec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Protocol: ${SUBPROTOCOL}\r\n\r\n`,
      )
      let received = Buffer.alloc(0)
      socket.on('data', (chunk: Buffer) => {
        received = Buffer.concat([received, chunk])
        // A short client frame: 2 header bytes, then the 4-byte masking key (RFC 6455 §5.2).
        if (received.length >= 6) {
          assert.equal(received[1]! & 0x80, 0x80, 'a client frame carries a mask')
          resolve(received.subarray(2, 6))
          socket.destroy()
        }
      })
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as AddressInfo).port
  const agent = new TowerAgent({
    name: 'member',
    token: () => Promise.resolve(clusterToken),
    proxyUrl: normalizeProxyUrl(`${secure ? 'https' : 'http'}://127.0.0.1:${port}`),
    ...(secure ? {proxyCa: pki.ca.certPem} : {insecurePlain: true}),
    keepaliveMs: 100,
    maxRetry: 0,
    maxRetryIntervalMs: 1000,
    destinations: new Map(),
    log: new CapturedLog().logger(),
    metrics: new TowerMetrics(),
  })
  void agent.start().catch(() => undefined)
  try {
    return await mask
  } finally {
    await agent.stop()
    server.close()
  }
}

describe('tower agent: WebSocket masking on the link', () => {
  it('sends an all-zero mask over wss://, where TLS hides the bytes and masking is pure cost', async () => {
    assert.deepEqual([...(await firstFrameMask(true))], [0, 0, 0, 0])
  })

  it('keeps random masks over plain ws://, where an intermediary could read the bytes', async () => {
    assert.notDeepEqual([...(await firstFrameMask(false))], [0, 0, 0, 0])
  })
})

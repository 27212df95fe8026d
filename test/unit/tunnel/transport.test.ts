import assert from 'node:assert/strict'
import {once} from 'node:events'
import type {AddressInfo} from 'node:net'
import {setTimeout as delay} from 'node:timers/promises'

import WebSocket, {WebSocketServer} from 'ws'

import {MAX_FRAME_BYTES, SUBPROTOCOL} from '../../../src/tunnel/constants.js'
import {MemoryTransport} from '../../../src/tunnel/memory-transport.js'
import {selectSubprotocol, webSocketOptions, webSocketTransport} from '../../../src/tunnel/transport.js'

describe('tunnel transports', () => {
  describe('memory', () => {
    it('delivers copies in order, then the close, to both ends', async () => {
      const [left, right] = MemoryTransport.pair()
      const received: string[] = []
      const closes: string[] = []
      right.onMessage((message) => received.push(message.toString()))
      left.onClose((code, reason) => closes.push(`left ${code} ${reason}`))
      right.onClose((code, reason) => closes.push(`right ${code} ${reason}`))
      const reused = Buffer.from('first')
      left.send(reused, () => undefined)
      reused.write('XXXXX')
      left.send(Buffer.from('second'), () => undefined)
      assert.equal(left.bufferedAmount, 11)
      left.close(1000, 'done')
      const afterClose = new Promise<Error | null | undefined>((resolve) =>
        left.send(Buffer.from('late'), resolve),
      )
      await delay(5)
      assert.deepEqual(received, ['first', 'second'])
      assert.deepEqual(closes, ['left 1000 done', 'right 1000 done'])
      assert.ok((await afterClose) instanceof Error)
      assert.equal(left.bufferedAmount, 0)
    })
  })

  describe('ws adapter', () => {
    let server: WebSocketServer
    let client: WebSocket
    let serverSocket: WebSocket
    const extraSockets: WebSocket[] = []

    beforeEach(async () => {
      server = new WebSocketServer({
        host: '127.0.0.1',
        port: 0,
        handleProtocols: selectSubprotocol,
        ...webSocketOptions,
      })
      await once(server, 'listening')
      const accepted = once(server, 'connection') as Promise<[WebSocket]>
      client = new WebSocket(
        `ws://127.0.0.1:${(server.address() as AddressInfo).port}`,
        SUBPROTOCOL,
        webSocketOptions,
      )
      await once(client, 'open')
      ;[serverSocket] = await accepted
    })

    afterEach(async () => {
      for (const socket of [client, serverSocket, ...extraSockets.splice(0)]) socket.terminate()
      await new Promise((resolve) => server.close(resolve))
    })

    it('negotiates the tunnel sub-protocol', () => {
      assert.deepEqual([client.protocol, serverSocket.protocol], [SUBPROTOCOL, SUBPROTOCOL])
    })

    it('refuses an upgrade that does not offer the sub-protocol', async () => {
      const stranger = new WebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}`, 'chat')
      const [error] = (await once(stranger, 'error')) as [Error]
      assert.match(error.message, /subprotocol/i)
    })

    it('keeps messages that arrive before the session registers', async () => {
      const transport = webSocketTransport(serverSocket)
      client.send(Buffer.from('early'))
      await delay(20)
      const received: string[] = []
      transport.onMessage((message, isBinary) => received.push(`${message.toString()} ${isBinary}`))
      assert.deepEqual(received, ['early true'])
    })

    it('queues sends and catches the first message while a client is still connecting', async () => {
      server.once('connection', (socket: WebSocket) => socket.send(Buffer.from('hello from the server')))
      const connecting = new WebSocket(
        `ws://127.0.0.1:${(server.address() as AddressInfo).port}`,
        SUBPROTOCOL,
      )
      extraSockets.push(connecting)
      const transport = webSocketTransport(connecting)
      const received = new Promise<string>((resolve) =>
        transport.onMessage((message) => resolve(message.toString())),
      )
      const sent = new Promise<Error | null | undefined>((resolve) =>
        transport.send(Buffer.from('queued'), resolve),
      )
      const [accepted] = (await once(server, 'connection')) as [WebSocket]
      extraSockets.push(accepted)
      const serverGot = once(accepted, 'message') as Promise<[Buffer]>
      assert.equal((await sent) ?? undefined, undefined)
      assert.equal((await serverGot)[0].toString(), 'queued')
      assert.equal(await received, 'hello from the server')
    })

    it('drops a peer that never answers the close handshake', async () => {
      const transport = webSocketTransport(serverSocket, 50)
      const closed = new Promise<number>((resolve) => transport.onClose(resolve))
      client.pause()
      const started = Date.now()
      transport.close(1011, 'keepalive timeout')
      assert.equal(await closed, 1006)
      assert.ok(Date.now() - started < 1000)
    })

    it('sends a long close reason truncated to what a close frame holds', async () => {
      const transport = webSocketTransport(serverSocket)
      const closed = once(client, 'close') as Promise<[number, Buffer]>
      transport.close(1000, 'x'.repeat(300))
      const [code, reason] = await closed
      assert.deepEqual([code, reason.byteLength], [1000, 123])
    })

    it('reports a socket that is already closed', async () => {
      client.close()
      await once(serverSocket, 'close')
      const transport = webSocketTransport(serverSocket)
      const code = await new Promise<number>((resolve) => transport.onClose(resolve))
      assert.equal(code, 1006)
    })

    it('makes ws refuse a message larger than a frame: the sender sees 1009, the session a closed link', async () => {
      const transport = webSocketTransport(serverSocket)
      const received: number[] = []
      transport.onMessage((message) => received.push(message.byteLength))
      const closed = new Promise<number>((resolve) => transport.onClose(resolve))
      const senderSaw = once(client, 'close') as Promise<[number]>
      client.send(Buffer.alloc(MAX_FRAME_BYTES))
      client.send(Buffer.alloc(MAX_FRAME_BYTES + 1))
      assert.equal((await senderSaw)[0], 1009)
      await closed
      assert.deepEqual(received, [MAX_FRAME_BYTES])
    })
  })
})

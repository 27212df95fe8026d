import net from 'node:net'

/**
 * A TCP relay on 127.0.0.1 between an agent and the proxy that a test can make fail the way networks do: `stall()`
 * is a link that silently drops every packet (nothing passes either way, nothing is closed, as in a partition;
 * what was sent meanwhile arrives once it `heal()`s, as TCP retransmits it).
 */
export class FaultyLink {
  private stalled = false
  private readonly pairs = new Set<{heal(): void; destroy(): void}>()

  private constructor(private readonly server: net.Server) {}

  static async start(target: {host: string; port: number}): Promise<FaultyLink> {
    const server = net.createServer()
    const link = new FaultyLink(server)
    server.on('connection', (client) => link.relay(client, net.connect(target)))
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    return link
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port
  }

  /** Connections accepted and still open. */
  get connections(): number {
    return this.pairs.size
  }

  stall(): void {
    this.stalled = true
  }

  heal(): void {
    this.stalled = false
    for (const pair of this.pairs) pair.heal()
  }

  async close(): Promise<void> {
    for (const pair of this.pairs) pair.destroy()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }

  private relay(client: net.Socket, upstream: net.Socket): void {
    const held: {to: net.Socket; from: net.Socket; chunk: Buffer}[] = []
    const forward = (from: net.Socket, to: net.Socket): void => {
      from.on('data', (chunk: Buffer) => {
        if (this.stalled || held.length > 0) {
          held.push({to, from, chunk})
          from.pause()
          return
        }
        if (!to.write(chunk)) {
          from.pause()
          to.once('drain', () => {
            if (!this.stalled) from.resume()
          })
        }
      })
      from.once('end', () => to.end())
    }
    const pair = {
      heal: () => {
        for (const {to, chunk} of held.splice(0)) to.write(chunk)
        client.resume()
        upstream.resume()
      },
      destroy: () => {
        client.destroy()
        upstream.destroy()
      },
    }
    this.pairs.add(pair)
    forward(client, upstream)
    forward(upstream, client)
    for (const socket of [client, upstream]) {
      socket.setNoDelay(true)
      socket.on('error', () => pair.destroy())
      socket.once('close', () => {
        pair.destroy()
        this.pairs.delete(pair)
      })
    }
  }
}

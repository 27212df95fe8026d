import assert from 'node:assert/strict'
import {EventEmitter} from 'node:events'
import {PassThrough} from 'node:stream'

import {KsctlError} from '../../../src/errors.js'
import {parseAllowFlags} from '../../../src/tower/agent/agent-dial.js'
import {routeByPath} from '../../../src/tower/proxy/front-ends.js'
import {NoSessionError, SessionPool} from '../../../src/tower/proxy/session-pool.js'
import {TunnelError, type TunnelSession, type TunnelStream} from '../../../src/tunnel/index.js'

class FakeSession extends EventEmitter {
  closed = false
  responsive = true
  peerGoingAway = false
  opened = 0
  close(): void {
    this.closed = true
    this.emit('close')
  }
  constructor(
    private readonly active: number,
    private readonly failWith?: TunnelError,
  ) {
    super()
  }
  get stats() {
    return {streamsActive: this.active}
  }
  openStream(): Promise<TunnelStream> {
    this.opened++
    if (this.failWith !== undefined) return Promise.reject(this.failWith)
    return Promise.resolve(new PassThrough() as unknown as TunnelStream)
  }
}

const asSession = (fake: FakeSession): TunnelSession => fake as unknown as TunnelSession

describe('tower session pool', () => {
  it('opens on the live session with the fewest open streams', async () => {
    const pool = new SessionPool({changed: () => undefined})
    const busy = new FakeSession(5)
    const idle = new FakeSession(1)
    const dead = new FakeSession(0)
    dead.closed = true
    for (const session of [busy, idle, dead]) pool.add('m', asSession(session), 'credential')
    await pool.openStream('m', 'kubernetes')
    assert.deepEqual([busy.opened, idle.opened, dead.opened], [0, 1, 0])
  })

  it('falls over to the next session when one is going away, and reports no session when none is left', async () => {
    const pool = new SessionPool({changed: () => undefined})
    const leaving = new FakeSession(0, new TunnelError('TUNNEL_ERR_GOING_AWAY', 'session is going away'))
    const next = new FakeSession(3)
    pool.add('m', asSession(leaving), 'credential')
    pool.add('m', asSession(next), 'credential')
    await pool.openStream('m', 'kubernetes')
    assert.deepEqual([leaving.opened, next.opened], [1, 1])
    await assert.rejects(pool.openStream('other', 'kubernetes'), NoSessionError)
  })

  it('on a replaced token, closes the sessions on it but those whose agent already hands over, and keeps the rest', () => {
    const pool = new SessionPool({changed: () => undefined})
    const [onOld, handingOver, onNew] = [new FakeSession(0), new FakeSession(1), new FakeSession(0)]
    pool.add('m', asSession(onOld), 'old')
    pool.add('m', asSession(handingOver), 'old')
    pool.add('m', asSession(onNew), 'new')
    handingOver.peerGoingAway = true
    handingOver.emit('goingAway')
    assert.deepEqual(pool.presence('m', 'new'), {sessions: 3, servingOnNext: 1, servingOnOthers: 1})
    pool.closeSessionsExcept('m', new Set(['new']))
    assert.deepEqual(
      [onOld.closed, handingOver.closed, onNew.closed],
      [true, false, false],
      'the draining session finishes its streams',
    )
    assert.deepEqual(pool.presence('m', 'new'), {sessions: 2, servingOnNext: 1, servingOnOthers: 0})
  })

  it('opens no stream on a session whose agent is going away', async () => {
    const pool = new SessionPool({changed: () => undefined})
    const leaving = new FakeSession(0)
    const staying = new FakeSession(5)
    leaving.peerGoingAway = true
    pool.add('m', asSession(leaving), 'old')
    pool.add('m', asSession(staying), 'new')
    await pool.openStream('m', 'kubernetes')
    assert.deepEqual([leaving.opened, staying.opened], [0, 1])
  })

  it('forgets a session when it closes and reports the count', () => {
    const counts: number[] = []
    const pool = new SessionPool({changed: (_cluster, sessions) => counts.push(sessions)})
    const session = new FakeSession(0)
    pool.add('m', asSession(session), 'credential')
    session.emit('close')
    assert.deepEqual(counts, [1, 0])
    assert.equal(pool.count('m'), 0)
  })
})

describe('tower agent destinations', () => {
  it('parses --allow NAME=host:port and refuses bad or reserved names', () => {
    assert.deepEqual(
      parseAllowFlags(['echo=127.0.0.1:9000', 'web=example.com']),
      new Map([
        ['echo', {host: '127.0.0.1', port: 9000}],
        ['web', {host: 'example.com', port: 80}],
      ]),
    )
    for (const bad of ['Echo=1.2.3.4:1', 'kubernetes=1.2.3.4:1', '=1.2.3.4:1', 'x=1.2.3.4:99999']) {
      assert.throws(() => parseAllowFlags([bad]), KsctlError, bad)
    }
  })

  it('routes /clusters/NAME/… by path to kube-apiserver and /clusters/NAME/destinations/DEST/… to DEST', () => {
    const kubernetes = (cluster: string, path: string) => ({cluster, destination: 'kubernetes', path})
    assert.deepEqual(
      routeByPath('/clusters/member1/api/v1/namespaces?watch=1'),
      kubernetes('member1', '/api/v1/namespaces?watch=1'),
    )
    assert.deepEqual(routeByPath('/clusters/member1'), kubernetes('member1', '/'))
    assert.deepEqual(routeByPath('/clusters/member1?x=1'), kubernetes('member1', '/?x=1'))
    assert.deepEqual(routeByPath('/clusters/member1/destinations/prometheus/api/v1/query?q=up'), {
      cluster: 'member1',
      destination: 'prometheus',
      path: '/api/v1/query?q=up',
    })
    assert.deepEqual(routeByPath('/clusters/member1/destinations/kubesphere'), {
      cluster: 'member1',
      destination: 'kubesphere',
      path: '/',
    })
    assert.deepEqual(
      routeByPath('/clusters/member1/destinations/Bad_Name/x'),
      kubernetes('member1', '/destinations/Bad_Name/x'),
    )
    assert.equal(routeByPath('/api/v1'), undefined)
    assert.equal(routeByPath('/clusters/UPPER/api'), undefined)
    assert.equal(routeByPath('/clusters/member1x../api'), undefined)
  })
})

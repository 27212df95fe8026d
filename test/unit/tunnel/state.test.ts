import assert from 'node:assert/strict'

import {nextState, StreamEvent, StreamState} from '../../../src/tunnel/state.js'

const S = StreamState
const E = StreamEvent

// Every allowed transition of PROTOCOL.md §5.5; every other (state, event) pair must be refused.
const allowed: [StreamState, StreamEvent, StreamState][] = [
  [S.Init, E.SendSyn, S.SynSent],
  [S.Init, E.ReceiveSyn, S.SynReceived],
  [S.SynSent, E.ReceiveAck, S.Established],
  [S.SynReceived, E.SendAck, S.Established],
  [S.Established, E.SendFin, S.LocalClosed],
  [S.Established, E.ReceiveFin, S.RemoteClosed],
  [S.LocalClosed, E.ReceiveFin, S.Closed],
  [S.RemoteClosed, E.SendFin, S.Closed],
  ...[S.Init, S.SynSent, S.SynReceived, S.Established, S.LocalClosed, S.RemoteClosed].flatMap(
    (state): [StreamState, StreamEvent, StreamState][] => [
      [state, E.SendRst, S.Reset],
      [state, E.ReceiveRst, S.Reset],
    ],
  ),
]

describe('tunnel stream state machine', () => {
  for (const [state, event, next] of allowed) {
    it(`${state} --${event}--> ${next}`, () => assert.equal(nextState(state, event), next))
  }

  it('refuses every other transition', () => {
    const refused: string[] = []
    for (const state of Object.values(StreamState)) {
      for (const event of Object.values(StreamEvent)) {
        const isAllowed = allowed.some(([from, on]) => from === state && on === event)
        if (!isAllowed) {
          assert.equal(nextState(state, event), undefined, `${state} on ${event}`)
          refused.push(`${state}/${event}`)
        }
      }
    }
    assert.equal(refused.length, 8 * 8 - allowed.length)
  })

  it('keeps Closed and Reset final, even for RST', () => {
    for (const state of [S.Closed, S.Reset]) {
      for (const event of Object.values(StreamEvent)) assert.equal(nextState(state, event), undefined)
    }
  })
})

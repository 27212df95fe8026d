/** The stream state machine of PROTOCOL.md §5.5, as pure functions so every transition can be tested alone. */

export enum StreamState {
  /** The stream object exists; nothing was sent or received yet. */
  Init = 'Init',
  /** Proxy: SYN sent, waiting for ACK or RST. */
  SynSent = 'SynSent',
  /** Agent: SYN received, the application decides. */
  SynReceived = 'SynReceived',
  /** Open in both directions. */
  Established = 'Established',
  /** We sent FIN; we can still receive. */
  LocalClosed = 'LocalClosed',
  /** The peer sent FIN; we can still send. */
  RemoteClosed = 'RemoteClosed',
  /** Both sides sent FIN; the stream is forgotten. */
  Closed = 'Closed',
  /** RST was sent or received; the stream is forgotten. */
  Reset = 'Reset',
}

export enum StreamEvent {
  SendSyn = 'send SYN',
  ReceiveSyn = 'recv SYN',
  SendAck = 'send ACK',
  ReceiveAck = 'recv ACK',
  SendFin = 'send FIN',
  ReceiveFin = 'recv FIN',
  SendRst = 'send RST',
  ReceiveRst = 'recv RST',
}

/** The state after `event`, or undefined when PROTOCOL.md does not allow `event` in `state`. */
export function nextState(state: StreamState, event: StreamEvent): StreamState | undefined {
  if (isTerminal(state)) return undefined
  if (event === StreamEvent.SendRst || event === StreamEvent.ReceiveRst) return StreamState.Reset
  switch (state) {
    case StreamState.Init:
      if (event === StreamEvent.SendSyn) return StreamState.SynSent
      return event === StreamEvent.ReceiveSyn ? StreamState.SynReceived : undefined
    case StreamState.SynSent:
      return event === StreamEvent.ReceiveAck ? StreamState.Established : undefined
    case StreamState.SynReceived:
      return event === StreamEvent.SendAck ? StreamState.Established : undefined
    case StreamState.Established:
      if (event === StreamEvent.SendFin) return StreamState.LocalClosed
      return event === StreamEvent.ReceiveFin ? StreamState.RemoteClosed : undefined
    case StreamState.LocalClosed:
      return event === StreamEvent.ReceiveFin ? StreamState.Closed : undefined
    case StreamState.RemoteClosed:
      return event === StreamEvent.SendFin ? StreamState.Closed : undefined
    case StreamState.Closed:
    case StreamState.Reset:
      return undefined
    default: {
      const unreachable: never = state
      return unreachable
    }
  }
}

/** Closed and Reset streams are removed from the session's table. */
export function isTerminal(state: StreamState): boolean {
  return state === StreamState.Closed || state === StreamState.Reset
}

/** Whether this side may still send DATA. */
export function canSendData(state: StreamState): boolean {
  return state === StreamState.Established || state === StreamState.RemoteClosed
}

/** Whether the peer may still send DATA, so credit is still worth returning. */
export function canReceiveData(state: StreamState): boolean {
  return state === StreamState.Established || state === StreamState.LocalClosed
}

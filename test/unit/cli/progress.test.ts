import assert from 'node:assert/strict'

import {Progress, spinnerStream, type ProgressStream} from '../../../src/cli/progress.js'
import {log} from '../../../src/log.js'

/** A terminal as the spinner sees it: what was written, with cursor moves and line clears as markers. */
class FakeTerminal implements ProgressStream {
  readonly isTTY = true
  readonly columns = 120
  readonly output: string[] = []

  write = (chunk: string | Uint8Array): boolean => {
    this.output.push(String(chunk))
    return true
  }

  cursorTo = (x: number): boolean => {
    this.output.push(`<cursor to ${x}>`)
    return true
  }

  moveCursor = (dx: number, dy: number): boolean => {
    this.output.push(`<cursor by ${dx},${dy}>`)
    return true
  }

  clearLine = (): boolean => {
    this.output.push('<clear line>')
    return true
  }

  text(): string {
    return this.output.join('')
  }
}

/** Runs `body` with these environment variables (undefined: unset), as yocto-spinner reads them on construction. */
async function withEnv<T>(vars: Record<string, string | undefined>, body: () => T | Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((key) => [key, process.env[key]]))
  const apply = (values: Record<string, string | undefined>) => {
    for (const [key, value] of Object.entries(values)) {
      if (value === undefined) delete process.env[key]
      else process.env[key] = value
    }
  }
  apply(vars)
  try {
    return await body()
  } finally {
    apply(saved)
  }
}

/** Captures the log lines written to stderr while `body` runs. */
async function stderrOf(body: () => void | Promise<void>): Promise<string> {
  const lines: string[] = []
  const original = process.stderr.write.bind(process.stderr)
  process.stderr.write = (chunk: string | Uint8Array): boolean => lines.push(String(chunk)) > 0
  try {
    await body()
  } finally {
    process.stderr.write = original
  }
  return lines.join('')
}

const terminalEnv = {CI: undefined, TERM: 'xterm-256color'}

describe('progress of a long wait', () => {
  afterEach(() => log.configure('info', 'text'))

  describe('on an interactive terminal', () => {
    it('draws one spinner line with the state and the time waited of the limit, redrawn in place', async () => {
      const terminal = new FakeTerminal()
      const progress = new Progress()
      const logged = await stderrOf(() =>
        withEnv(terminalEnv, async () => {
          progress.configure(terminal)
          progress.begin('cluster "member1" to become Ready', 15 * 60_000)
          progress.update('host: cluster "member1" Initialized; waiting for AgentAvailable')
          assert.match(
            terminal.text(),
            /⠋ host: cluster "member1" Initialized; waiting for AgentAvailable \(0s of 15m\)/,
          )
          assert.equal(progress.current(), 'cluster "member1" to become Ready (waited 0s of 15m)')
          // The time waited is redrawn every second while the state stays.
          const deadline = Date.now() + 3000
          while (!terminal.text().includes('(1s of 15m)') && Date.now() < deadline) {
            await new Promise((resolve) => setTimeout(resolve, 50))
          }
          assert.match(terminal.text(), /AgentAvailable \(1s of 15m\)/)
          progress.update('host: cluster "member1" Initialized, AgentAvailable; waiting for Ready')
          progress.end('host: cluster "member1" is Ready')
        }),
      )
      const drawn = terminal.text()
      assert.match(drawn, /<cursor to 0><clear line>.*AgentAvailable; waiting for Ready \(1s of 15m\)/)
      assert.ok(drawn.startsWith('\u001B[?25l'), 'the cursor is hidden while spinning')
      assert.ok(
        drawn.endsWith('\u001B[?25h<cursor to 0><clear line>'),
        'shown again, the line cleared, at the end',
      )
      assert.doesNotMatch(drawn, /\n/, 'a spinner never adds lines')
      assert.ok(!drawn.includes('\u001B[3'), 'no colour with NO_COLOR')
      assert.equal(logged, 'host: cluster "member1" is Ready\n', 'the final state stays, as a log line')
      assert.equal(progress.current(), undefined)
    })

    it('says when a wait has no time limit (--timeout 0)', async () => {
      const terminal = new FakeTerminal()
      const progress = new Progress()
      await withEnv(terminalEnv, () => {
        progress.configure(terminal)
        progress.begin('ks-installer to enable multicluster', 0)
        progress.update('multicluster: installing')
        progress.stop()
      })
      assert.match(terminal.text(), /multicluster: installing \(0s, no time limit\)/)
    })

    it('is used for text logs at level info without --json, and nowhere else', async () => {
      const terminal = new FakeTerminal()
      const person = {logFormat: 'text' as const, json: false}
      await withEnv(terminalEnv, () => {
        assert.equal(spinnerStream(terminal, person), terminal)
        assert.equal(spinnerStream(terminal, {...person, json: true}), undefined, '--json')
        assert.equal(spinnerStream(terminal, {...person, logFormat: 'json'}), undefined, '--log-format json')
        log.configure('warn')
        assert.equal(spinnerStream(terminal, person), undefined, '--log-level warn')
        log.configure('info')
        assert.equal(spinnerStream({...terminal, isTTY: false}, person), undefined, 'a pipe')
      })
      await withEnv({CI: 'true', TERM: 'xterm'}, () => {
        assert.equal(spinnerStream(terminal, person), undefined, 'CI')
      })
      await withEnv({CI: undefined, TERM: 'dumb'}, () => {
        assert.equal(spinnerStream(terminal, person), undefined, 'a dumb terminal')
      })
    })
  })

  describe('without a terminal', () => {
    it('logs a line each time the state changes, and nothing more', async () => {
      const progress = new Progress()
      progress.configure(undefined)
      const logged = await stderrOf(() => {
        progress.begin('cluster "member1" to become Ready', 60_000)
        progress.update('host: cluster "member1" registered; waiting for Initialized')
        progress.update('host: cluster "member1" registered; waiting for Initialized')
        progress.update('host: cluster "member1" Initialized; waiting for AgentAvailable')
        progress.update('host: cluster "member1" is Ready')
        progress.end('host: cluster "member1" is Ready')
      })
      assert.equal(
        logged,
        [
          'host: cluster "member1" registered; waiting for Initialized',
          'host: cluster "member1" Initialized; waiting for AgentAvailable',
          'host: cluster "member1" is Ready',
          '',
        ].join('\n'),
      )
    })

    it('logs JSON lines with --log-format json', async () => {
      const progress = new Progress()
      log.configure('info', 'json')
      progress.configure(undefined)
      const logged = await stderrOf(() => {
        progress.begin('cluster "member1" to become Ready', 60_000)
        progress.update('host: cluster "member1" registered; waiting for Initialized')
        progress.end()
      })
      assert.equal(
        (JSON.parse(logged) as {msg: string}).msg,
        'host: cluster "member1" registered; waiting for Initialized',
      )
    })
  })
})

import assert from 'node:assert/strict'
import path from 'node:path'

import {execa} from 'execa'

const root = path.resolve(import.meta.dirname, '..', '..', '..', '..')

/** A process set up as the tower commands set themselves up, in which an error escapes every handler. */
async function escape(how: 'throw' | 'reject', level: 'info' | 'debug') {
  const script = `
    import {Logger} from './src/log.ts'
    import {exitOnEscapedError} from './src/tower/shared/signals.ts'
    exitOnEscapedError(new Logger('${level}', 'json'))
    const boom = new Error('boom: HTTP-Code: 429')
    if ('${how}' === 'throw') setTimeout(() => { throw boom })
    else void Promise.reject(boom)
  `
  return execa(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: root,
    reject: false,
  })
}

describe('tower processes: an error no handler caught', function () {
  this.timeout(30_000)

  for (const how of ['throw', 'reject'] as const) {
    it(`(${how}) ends the process with one log line and exit code 1, the stack only at --log-level debug`, async () => {
      const plain = await escape(how, 'info')
      assert.equal(plain.exitCode, 1)
      const lines = plain.stderr.split('\n').filter((line) => line !== '')
      assert.equal(lines.length, 1, plain.stderr)
      const record = JSON.parse(lines[0] ?? '{}') as {level: string; msg: string; stack?: string}
      assert.deepEqual([record.level, record.msg], ['error', 'unexpected error: boom: HTTP-Code: 429'])
      assert.equal(record.stack, undefined)
      assert.doesNotMatch(plain.stderr, /\n\s+at /)

      const debug = await escape(how, 'debug')
      assert.equal(debug.exitCode, 1)
      assert.match((JSON.parse(debug.stderr.trim()) as {stack: string}).stack, /\n\s+at /)
    })
  }
})

import assert from 'node:assert/strict'
import {existsSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {tempDir} from '../helpers/temp-dir.js'

describe('tempDir() in the tests', () => {
  let madeInTest = ''
  let madeInHook = ''

  before(() => {
    madeInHook = tempDir('ksctl-hook-')
  })

  it("is in the run's own temp dir, which TMPDIR names for the processes the tests start", () => {
    const dir = tempDir('ksctl-example-')
    assert.equal(path.dirname(dir), tmpdir())
    assert.equal(process.env.TMPDIR, tmpdir())
    assert.match(path.basename(tmpdir()), /^ksctl-test-run-/)
    madeInTest = dir
    writeFileSync(path.join(dir, 'token'), 'a token a test wrote')
  })

  it('is removed, with what it holds, after the test that made it', () => {
    assert.ok(madeInTest !== '')
    assert.equal(existsSync(madeInTest), false)
  })

  it('made outside a test, lasts until the end of the run', () => {
    assert.equal(existsSync(madeInHook), true)
  })
})

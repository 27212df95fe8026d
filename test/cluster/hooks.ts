import {startTestBed, type TestBed} from '../testbed/testbed.js'

let current: TestBed | undefined

/** The test bed shared by the whole cluster run. */
export function testBed(): TestBed {
  if (!current)
    throw new Error('the test bed is not running: load test/cluster/hooks.ts as a mocha root hook plugin')
  return current
}

export const mochaHooks = {
  async beforeAll(this: Mocha.Context) {
    // A cold build of kube-apiserver and etcd takes minutes; a warm start takes seconds.
    this.timeout(15 * 60_000)
    current = await startTestBed()
  },
  async afterAll(this: Mocha.Context) {
    this.timeout(60_000)
    await current?.stop()
    current = undefined
  },
}

import assert from 'node:assert/strict'
import {chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {ksctl} from '../helpers/ksctl-process.js'
import {KubeSphereStandIn} from '../helpers/kubesphere-standin.js'
import {resetCluster} from '../testbed/seed.js'
import {bothClusters} from './cluster-state.js'
import {testBed} from './hooks.js'

describe('member join --output on the real apiservers', function () {
  this.timeout(120_000)
  let scratch: string
  let standIn: KubeSphereStandIn | undefined
  const join_ = (output: string) => [
    'member',
    'join',
    'member1',
    '--host-context',
    'host',
    '--member-context',
    'member',
    '--output',
    output,
    '--kubeconfig',
    testBed().kubeconfigPath,
  ]

  beforeEach(async () => {
    scratch = mkdtempSync(join(tmpdir(), 'ksctl-output-'))
    await resetCluster(testBed().kubeconfigPath, 'host', 'ks34-host')
    await resetCluster(testBed().kubeconfigPath, 'member', 'ks34-none')
    // KubeSphere's part, which writes nothing until a join starts: without it a join could not finish.
    standIn = new KubeSphereStandIn(testBed().kubeconfigPath, 'host', 'member').start()
  })

  afterEach(async () => {
    await standIn?.stop()
    standIn = undefined
    rmSync(scratch, {recursive: true, force: true})
  })

  it('refuses a path it cannot write before changing either cluster, as a usage error', async () => {
    const cases: [string, RegExp][] = [
      ['/nonexistent/dir/agent.yaml', /directory \/nonexistent\/dir does not exist/],
      [scratch, /it is a directory/],
    ]
    for (const [path, reason] of cases) {
      const before = await bothClusters()
      const refused = await ksctl(join_(path))
      assert.equal(refused.exitCode, 2, refused.stderr)
      assert.match(refused.stderr, new RegExp(`^error: cannot write --output ${path}: `, 'm'))
      assert.match(refused.stderr, reason)
      assert.doesNotMatch(refused.stderr, /unexpected error/)
      assert.deepEqual(await bothClusters(), before, path)
    }
  })

  it('makes an existing 0644 file private before writing the token into it, and notes go to stderr', async () => {
    const file = join(scratch, 'agent.yaml')
    writeFileSync(file, 'an older manifest\n')
    chmodSync(file, 0o644)
    const joined = await ksctl(join_(file))
    assert.equal(joined.exitCode, 0, joined.stderr)
    assert.equal(statSync(file).mode & 0o777, 0o600)
    assert.match(readFileSync(file, 'utf8'), /^ *- --token=[0-9a-f]{64}$/m)
    assert.match(joined.stderr, new RegExp(`^wrote the agent manifest to ${file}, readable only by you`, 'm'))
    assert.match(
      joined.stderr,
      new RegExp(`^apply it on the member: kubectl --context member create -f ${file}$`, 'm'),
    )
    assert.doesNotMatch(joined.stdout, /wrote|apply it|note/)
  })
})

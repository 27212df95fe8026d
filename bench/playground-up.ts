/* eslint-disable no-console -- the bench's output is its figures on stdout and its progress on stderr */
import {mkdir, mkdtemp, rm, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {parseArgs} from 'node:util'

import {execa} from 'execa'

import {describeMachine} from './report.js'
import {summarize} from './stats.js'

/**
 * How long a warm `ksctl playground up` takes to "member joined" (issue 11: under 15 s, median of 5): each run is
 * `up --detach`, which returns once the member has joined, timed from start to exit, then `down`. One run first
 * warms the cache (a first run may build kube-apiserver and etcd); it is not counted. Needs `npm run build`.
 */
const runJs = fileURLToPath(new URL('../bin/run.js', import.meta.url))
const resultsFile = fileURLToPath(new URL('results/playground-up.json', import.meta.url))

async function ksctl(args: string[]): Promise<void> {
  const result = await execa(process.execPath, [runJs, ...args], {
    reject: false,
    stdin: 'ignore',
    env: {NO_COLOR: '1'},
    all: true,
  })
  if (result.exitCode !== 0) throw new Error(`ksctl ${args.join(' ')} failed:\n${result.all}`)
}

async function timedUp(edition: string): Promise<number> {
  const parent = await mkdtemp(path.join(os.tmpdir(), 'ksctl-bench-playground-'))
  const dir = path.join(parent, 'pg')
  try {
    const started = performance.now()
    await ksctl(['playground', 'up', '--detach', '--dir', dir, '--edition', edition])
    const seconds = (performance.now() - started) / 1000
    await ksctl(['playground', 'down', '--dir', dir])
    return seconds
  } finally {
    await rm(parent, {recursive: true, force: true})
  }
}

async function main(): Promise<void> {
  const {values} = parseArgs({
    options: {quick: {type: 'boolean', default: false}, edition: {type: 'string', default: '3'}},
  })
  const runs = values.quick ? 1 : 5
  console.error('playground up: one warm-up run (builds kube-apiserver and etcd if the cache is cold)')
  await timedUp(values.edition)
  const samples: number[] = []
  for (let run = 1; run <= runs; run++) {
    const seconds = await timedUp(values.edition)
    console.error(`run ${String(run)}/${String(runs)}: ${seconds.toFixed(1)} s`)
    samples.push(seconds)
  }
  const summary = summarize(samples)
  await mkdir(path.dirname(resultsFile), {recursive: true})
  await writeFile(
    resultsFile,
    `${JSON.stringify({machine: describeMachine(), edition: values.edition, quick: values.quick, samples, summary}, undefined, 2)}\n`,
  )
  console.log(
    `playground up to "member joined" (KubeSphere ${values.edition === '3' ? '3.4' : '4.1'}, warm): median ${summary.value.toFixed(1)} s of ${String(summary.runs)} (min ${summary.min.toFixed(1)}, max ${summary.max.toFixed(1)}); target: under 15 s`,
  )
  console.log(`records: ${path.relative(process.cwd(), resultsFile)}`)
}

await main()

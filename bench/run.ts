/* eslint-disable no-console -- the bench's output is its table on stdout and its progress on stderr */
import {writeFile} from 'node:fs/promises'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {parseArgs} from 'node:util'

import {createCertificateAuthority, issueCertificate} from '../src/pki/certificates.js'
import {chiselPath} from './paths/chisel.js'
import {directPath} from './paths/direct.js'
import {ksctlPlainPath, ksctlTlsKubernetesPath, ksctlTlsPath} from './paths/ksctl.js'
import {opensshPath} from './paths/openssh.js'
import type {BenchPath} from './paths/path.js'
import {removeDirectory, temporaryDirectory} from './paths/tunnel-process.js'
import {describeMachine, Report} from './report.js'
import {bulkScenario} from './scenarios/bulk.js'
import {headOfLineScenario} from './scenarios/head-of-line.js'
import {manyAgentsScenario} from './scenarios/many-agents.js'
import {manyStreamsScenario} from './scenarios/many-streams.js'
import {reconnectScenario} from './scenarios/reconnect.js'
import type {Scenario, Settings} from './scenarios/scenario.js'
import {smallRequestsScenario} from './scenarios/small-requests.js'
import {startUpstream, type UpstreamTlsFiles} from './upstream.js'

const allPaths: BenchPath[] = [
  directPath,
  ksctlTlsPath,
  ksctlTlsKubernetesPath,
  ksctlPlainPath,
  opensshPath,
  chiselPath,
]
const allScenarios: Scenario[] = [
  bulkScenario,
  smallRequestsScenario,
  headOfLineScenario,
  manyStreamsScenario,
  manyAgentsScenario,
  reconnectScenario,
]

// The competing transfer of the head-of-line scenario is cut off by time, never by its size.
const competingBulkBytes = 256 * 1024 ** 3

const fullSettings: Settings = {
  repetitions: 3,
  bulkBytes: 1024 ** 3,
  smallRequestSeconds: 5,
  concurrencies: [16, 64],
  competingBulkBytes,
  streams: 10_000,
  fleetAgents: 1000,
  idleCpuSeconds: 30,
}

/** Proves the harness end to end in about a minute; its figures mean little. */
const quickSettings: Settings = {
  repetitions: 1,
  bulkBytes: 64 * 1024 ** 2,
  smallRequestSeconds: 1,
  concurrencies: [16, 64],
  competingBulkBytes,
  streams: 200,
  fleetAgents: 20,
  idleCpuSeconds: 2,
}

const resultsFile = fileURLToPath(new URL('results/latest.json', import.meta.url))

function selected<T extends {name: string}>(all: T[], list: string | undefined, option: string): T[] {
  if (list === undefined) return all
  const names = list.split(',').map((name) => name.trim())
  const unknown = names.filter((name) => !all.some((item) => item.name === name))
  if (unknown.length > 0) {
    throw new Error(
      `${option}: unknown ${unknown.join(', ')}; choose from ${all.map((item) => item.name).join(', ')}`,
    )
  }
  return all.filter((item) => names.includes(item.name))
}

async function upstreamCertificates(directory: string): Promise<UpstreamTlsFiles> {
  const ca = await createCertificateAuthority({commonName: 'ksctl bench upstream CA', validityDays: 2})
  const server = await issueCertificate(ca, {
    commonName: '127.0.0.1',
    ipAddresses: ['127.0.0.1'],
    usage: 'server',
  })
  const files = {
    caFile: path.join(directory, 'upstream-ca.crt'),
    certFile: path.join(directory, 'upstream.crt'),
    keyFile: path.join(directory, 'upstream.key'),
  }
  await writeFile(files.caFile, ca.certPem)
  await writeFile(files.certFile, server.certPem)
  await writeFile(files.keyFile, server.keyPem, {mode: 0o600})
  return files
}

function message(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).replace(/\s+/g, ' ').slice(0, 400)
}

async function main(): Promise<void> {
  const {values} = parseArgs({
    options: {quick: {type: 'boolean', default: false}, only: {type: 'string'}, paths: {type: 'string'}},
  })
  const settings = values.quick ? quickSettings : fullSettings
  const scenarios = selected(allScenarios, values.only, '--only')
  const paths = selected(allPaths, values.paths, '--paths')
  const machine = describeMachine()
  const report = new Report()

  console.error(
    `preparing ${paths.map((candidate) => candidate.name).join(', ')} (installs peers on first use)`,
  )
  const availability = await Promise.all(
    paths.map(async (candidate) => ({path: candidate, ...(await candidate.prepare())})),
  )
  const available = availability.filter((entry) => entry.available).map((entry) => entry.path)
  for (const entry of availability) {
    if (entry.available) continue
    for (const scenario of scenarios) {
      report.note({scenario: scenario.name, path: entry.path.name, kind: 'unavailable', reason: entry.reason})
    }
  }

  let failures = 0
  const directory = await temporaryDirectory('upstream')
  const upstream = await startUpstream(await upstreamCertificates(directory))
  try {
    for (const scenario of scenarios) {
      for (const candidate of available) {
        console.error(`${scenario.name} / ${candidate.name}`)
        try {
          const outcome = await scenario.run(candidate, upstream, settings)
          if (outcome.kind === 'not-applicable') {
            report.note({
              scenario: scenario.name,
              path: candidate.name,
              kind: 'not applicable',
              reason: outcome.reason,
            })
            continue
          }
          for (const measurement of outcome.measurements) {
            report.add(
              scenario.name,
              candidate.name,
              measurement.metric,
              measurement.unit,
              measurement.samples,
            )
          }
        } catch (error) {
          failures++
          console.error(`  failed: ${message(error)}`)
          report.note({scenario: scenario.name, path: candidate.name, kind: 'failed', reason: message(error)})
        }
      }
    }
  } finally {
    await upstream.stop()
    await removeDirectory(directory)
  }

  const pathNames = paths.map((candidate) => candidate.name)
  await report.writeJson(resultsFile, {machine, quick: values.quick, paths: pathNames})
  console.log(report.table(scenarios, pathNames, machine))
  console.log(`\nrecords: ${path.relative(process.cwd(), resultsFile)}`)
  // A measurement that failed is a broken path or harness, not a slow one: the run says so in its status.
  if (failures > 0) {
    console.error(`${failures} scenario runs failed (see the table)`)
    process.exitCode = 1
  }
}

await main()

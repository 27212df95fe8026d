import assert from 'node:assert/strict'
import path from 'node:path'

import {Config, loadHelpClass, settings} from '@oclif/core'

const root = path.resolve(import.meta.dirname, '..', '..', '..')

/** Sections oclif lays out itself (usage) or prints as written (examples): not wrapped prose. */
const preformatted = new Set(['USAGE', 'EXAMPLES'])

function indent(line: string): number {
  return line.length - line.trimStart().length
}

/**
 * Line breaks made before a word that would still have fitted: text broken by hand, then wrapped again by
 * oclif. In prose (DESCRIPTION) the lines of a paragraph continue each other; in a table (FLAGS, COMMANDS,
 * TOPICS) a line indented deeper than the one before continues its cell, unless it starts the next flag's
 * row, or is the list of options oclif puts on a line of its own.
 */
function raggedLines(text: string, width: number): string[] {
  const found: string[] = []
  let section = ''
  const lines = text.split('\n')
  lines.forEach((line, index) => {
    if (/^[A-Z][A-Z ]+$/.test(line)) {
      section = line
      return
    }
    const next = lines[index + 1]
    if (next === undefined || line.trim() === '' || next.trim() === '' || preformatted.has(section)) return
    const prose = section === 'DESCRIPTION' || section.endsWith(' DESCRIPTIONS')
    const continues = prose
      ? indent(next) === indent(line)
      : indent(next) > indent(line) && !/^(-|<options:)/.test(next.trimStart())
    const firstWord = next.trim().split(/\s+/)[0] ?? ''
    if (continues && line.length + 1 + firstWord.length < width) found.push(`${line.trim()} ⏎ ${next.trim()}`)
  })
  return found
}

describe('help', function () {
  // Loading every command module through tsx takes seconds on a busy machine.
  this.timeout(60_000)
  let config: Config
  /** Every help page as the argv of `ksctl ARGV --help`: the root, every topic, every command. */
  let pages: string[][]
  let ownCommandIds: string[]
  const previousAutoTranspile = settings.enableAutoTranspile

  before(async () => {
    // The commands' TypeScript sources, not dist/ or a manifest that may be stale: the help as written.
    settings.enableAutoTranspile = true
    config = await Config.load({root, ignoreManifest: true})
    // Taken before any page is rendered: oclif's help rewrites command ids in place ("member:join" becomes
    // "member join"), which a CLI that shows one page never notices.
    const commands = config.commands.filter((command) => !command.hidden)
    const topics = config.topics.filter((topic) => !topic.hidden)
    pages = [[], ...topics.map((topic) => topic.name.split(':')), ...commands.map((c) => c.id.split(':'))]
    ownCommandIds = commands.filter((command) => command.pluginName === config.pjson.name).map((c) => c.id)
  })

  after(() => {
    settings.enableAutoTranspile = previousAutoTranspile
  })

  /** The page as `ksctl ARGV --help` prints it on a terminal `width` columns wide. */
  async function render(argv: string[], width: number): Promise<string> {
    const HelpClass = await loadHelpClass(config)
    const help = new HelpClass(config, {maxWidth: width, stripAnsi: true})
    const written: string[] = []
    const write = process.stdout.write.bind(process.stdout)
    process.stdout.write = (chunk: string | Uint8Array): boolean => written.push(String(chunk)) > 0
    try {
      await help.showHelp(argv)
    } finally {
      process.stdout.write = write
    }
    return written.join('')
  }

  it('covers every ksctl command and topic, and the standard plugins’ commands', () => {
    const ids = pages.map((argv) => argv.join(' '))
    for (const id of [
      '',
      'member',
      'member join',
      'tower',
      'tower proxy',
      'help',
      'version',
      'autocomplete',
    ]) {
      assert.ok(ids.includes(id), `no help page for "${id}"`)
    }
  })

  for (const width of [80, 120]) {
    it(`wraps each page once, at ${String(width)} columns: no line ends where the next line's first word fits`, async () => {
      for (const argv of pages) {
        assert.deepEqual(raggedLines(await render(argv, width), width), [], `ksctl ${argv.join(' ')} --help`)
      }
    })
  }

  it('shows no empty default ([default: ]) for a repeatable flag', async () => {
    for (const argv of pages) {
      assert.doesNotMatch(await render(argv, 120), /\[default: \]/, `ksctl ${argv.join(' ')} --help`)
    }
    assert.match(await render(['member', 'join'], 120), /--label=<value>\.\.\. +label of the Cluster/)
  })

  it('describes each topic in package.json, not by the summary of one of its commands', () => {
    const described = (config.pjson.oclif.topics ?? {}) as Record<string, {description?: string}>
    const topics = new Set(ownCommandIds.filter((id) => id.includes(':')).map((id) => id.split(':')[0] ?? ''))
    assert.deepEqual([...topics].sort(), [
      'agent',
      'agent-token',
      'host',
      'join-token',
      'member',
      'playground',
      'proxy',
      'tower',
    ])
    for (const topic of topics) {
      const description = described[topic]?.description
      assert.ok(description, `package.json has no oclif.topics.${topic}.description`)
      for (const id of ownCommandIds.filter((commandId) => commandId.startsWith(`${topic}:`))) {
        assert.notEqual(description, config.findCommand(id)?.summary, `topic ${topic} is described by ${id}`)
      }
    }
  })

  it('tells a ragged line from a wrapped one', () => {
    const ragged = [
      'DESCRIPTION',
      '  Checks both clusters first, a member that is',
      '  neither a host nor joined elsewhere.',
    ]
    assert.equal(raggedLines(ragged.join('\n'), 80).length, 1)
    const wrapped = ['DESCRIPTION', `  ${'word '.repeat(15)}`, '  last']
    assert.deepEqual(raggedLines(wrapped.join('\n'), 80), [])
    const table = ['FLAGS', '  --label=<value>  label of the', '                   Cluster', '  --wait  wait']
    assert.equal(raggedLines(table.join('\n'), 80).length, 1)
  })
})

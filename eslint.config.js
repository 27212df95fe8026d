import js from '@eslint/js'
import tseslint from 'typescript-eslint'

export default tseslint.config(
  {ignores: ['dist/**', 'out/**', 'node_modules/**', 'bin/**', 'scripts/**']},
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        projectService: {allowDefaultProject: ['eslint.config.js']},
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      '@typescript-eslint/restrict-template-expressions': ['error', {allowNumber: true}],
      '@typescript-eslint/no-unused-vars': ['error', {argsIgnorePattern: '^_'}],
      '@typescript-eslint/no-confusing-void-expression': 'off',
      // client-node's models are classes that the API itself builds from plain JSON; literals are the norm.
      '@typescript-eslint/no-unsafe-class-instance-assignment': 'off',
      '@typescript-eslint/no-misused-spread': 'off',
      '@typescript-eslint/require-await': 'off',
      'no-console': 'error',
    },
  },
  // The tunnel's two roles live apart, as remotedialer keeps server and client: the proxy and the agent each
  // import only src/tower/shared and the rest of src, never each other; shared imports neither.
  {
    files: ['src/tower/agent/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: '(^|/)proxy/',
              message: 'The agent does not import the proxy; move what both need to src/tower/shared.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['src/tower/proxy/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: '(^|/)agent/',
              message: 'The proxy does not import the agent; move what both need to src/tower/shared.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['src/tower/shared/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: '(^|/)(proxy|agent)/',
              message: 'src/tower/shared is what both roles use; it imports neither.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-dynamic-delete': 'off',
      // assert.equal narrows types, which makes every later optional chain on a result look unnecessary.
      '@typescript-eslint/no-unnecessary-condition': 'off',
      'no-console': 'off',
    },
  },
  {files: ['eslint.config.js'], ...tseslint.configs.disableTypeChecked},
)

// The lint rules `make test` enforces beside the formatter (prettier, .prettierrc.json):
// correctness checks a compiler does not do, and the naming rule of the codebase (no
// one-letter names on long-lived things: fields, parameter properties, type members, the
// parameters of exported functions and constructors).
import tseslint from 'typescript-eslint';

const oneLetter = '/^[A-Za-z]$/';
const message = 'one-letter name on a long-lived object: say what it is';

export default tseslint.config(
  { ignores: ['dist/**', 'coverage/**', 'var/**', 'node_modules/**'] },
  {
    files: ['**/*.ts'],
    languageOptions: { parser: tseslint.parser },
    plugins: { '@typescript-eslint': tseslint.plugin },
    rules: {
      'no-restricted-syntax': [
        'error',
        { selector: `PropertyDefinition > Identifier.key[name=${oneLetter}]`, message },
        { selector: `TSParameterProperty > Identifier[name=${oneLetter}]`, message },
        { selector: `TSPropertySignature > Identifier.key[name=${oneLetter}]`, message },
        { selector: `ExportNamedDeclaration > FunctionDeclaration > Identifier.params[name=${oneLetter}]`, message },
        { selector: `MethodDefinition[kind=constructor] > FunctionExpression > Identifier.params[name=${oneLetter}]`, message },
      ],
      'no-debugger': 'error',
      'no-dupe-keys': 'error',
      'no-unreachable': 'error',
      'no-self-compare': 'error',
      'no-constant-condition': ['error', { checkLoops: false }],
      '@typescript-eslint/no-floating-promises': 'off',
    },
  },
);

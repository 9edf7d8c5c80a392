// placeholder
import type {} from './register-fixture-cjs.cjs';
